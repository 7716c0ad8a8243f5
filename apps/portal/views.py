from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.selectors import institution_list


def home(request: HttpRequest) -> HttpResponse:
    institutions = institution_list().order_by("-member_count", "name")[:6]
    return render(request, "portal/home.html", {"institutions": institutions})

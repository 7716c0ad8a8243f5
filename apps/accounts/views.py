"""Portal pages: institutions, the signed-in user's profile and API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services
from apps.accounts.forms import ProfileForm, TokenCreateForm
from apps.accounts.typing import AuthenticatedHttpRequest


def institution_list(request: HttpRequest) -> HttpResponse:
    institutions = selectors.institution_list()
    query = request.GET.get("q", "").strip()
    if query:
        institutions = institutions.filter(name__icontains=query)
    page = Paginator(institutions, 25).get_page(request.GET.get("page"))
    return render(request, "accounts/institution_list.html", {"page": page, "query": query})


def institution_detail(request: HttpRequest, slug: str) -> HttpResponse:
    institution = get_object_or_404(selectors.institution_list(), slug=slug)
    return render(
        request,
        "accounts/institution_detail.html",
        {
            "institution": institution,
            "memberships": selectors.membership_list(institution=institution),
            "can_manage": selectors.user_can_manage_institution(
                user=request.user, institution=institution
            ),
        },
    )


@login_required
def profile(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.user_profile_update(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            for field, field_errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, field_errors)
        else:
            messages.success(request, "Your profile has been saved.")
            return redirect("accounts:profile")
    user = selectors.user_with_memberships(user=request.user)
    return render(request, "accounts/profile.html", {"form": form, "profile_user": user})


@login_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST or None)
    new_secret = None
    if request.method == "POST" and form.is_valid():
        _token, new_secret = services.api_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.cleaned_data["expires_in_days"],
        )
        form = TokenCreateForm()
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "new_secret": new_secret,
            "tokens": selectors.api_token_list(user=request.user),
        },
    )


@login_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(selectors.api_token_list(user=request.user), pk=token_id)
    services.api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” has been revoked.")
    return redirect("accounts:tokens")

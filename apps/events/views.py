"""Portal pages: the signed-in user's notifications, their preferences, and watching a
benchmark."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.typing import AuthenticatedHttpRequest
from apps.events import selectors, services
from apps.events.forms import PreferencesForm

PAGE_SIZE = 25


@login_required
def notification_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    page = Paginator(selectors.notification_list(user=request.user), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(request, "events/notification_list.html", {"page": page})


@login_required
def notification_open(request: AuthenticatedHttpRequest, notification_id: int) -> HttpResponse:
    """Marks the notification read and goes where it points (a path on this node only)."""
    notification = selectors.notification_get(user=request.user, notification_id=notification_id)
    services.notification_mark_read(user=request.user, notification=notification)
    return redirect(selectors.notification_target(notification) or "events:notification-list")


def _back_to_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    page = request.POST.get("page", "")
    url = reverse("events:notification-list")
    return redirect(f"{url}?page={page}" if page.isdigit() else url)


@login_required
@require_POST
def notification_read(request: AuthenticatedHttpRequest, notification_id: int) -> HttpResponse:
    notification = selectors.notification_get(user=request.user, notification_id=notification_id)
    services.notification_mark_read(user=request.user, notification=notification)
    return _back_to_list(request)


@login_required
@require_POST
def notification_read_all(request: AuthenticatedHttpRequest) -> HttpResponse:
    marked = services.notifications_mark_all_read(user=request.user)
    messages.success(request, f"{marked} notification{'s' if marked != 1 else ''} marked read.")
    return _back_to_list(request)


@login_required
def preferences(request: AuthenticatedHttpRequest) -> HttpResponse:
    rows = selectors.notification_preferences(user=request.user)
    form = PreferencesForm(request.POST or None, rows=rows)
    if request.method == "POST" and form.is_valid():
        services.notification_preferences_set(user=request.user, channels=form.channels())
        messages.success(request, "Your notification preferences have been saved.")
        return redirect("events:preferences")
    return render(request, "events/preferences.html", {"form": form})


@login_required
@require_POST
def benchmark_watch(request: AuthenticatedHttpRequest, benchmark_id: int) -> HttpResponse:
    if request.POST.get("watch") == "0":
        services.benchmark_unwatch(user=request.user, benchmark_id=benchmark_id)
        messages.success(request, "You no longer watch this benchmark.")
    else:
        services.benchmark_watch(user=request.user, benchmark_id=benchmark_id)
        messages.success(request, "You will hear of every result published on this benchmark.")
    return redirect("catalog:benchmark-detail", benchmark_id=benchmark_id)

"""Portal pages for webhooks: the user's endpoints and their institutions' (for admins), each
with its secret, settings, actions and delivery log. Someone else's endpoint is not found."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.typing import AuthenticatedHttpRequest
from apps.events import webhook_selectors, webhooks
from apps.events.models import WebhookEndpoint
from apps.events.webhook_forms import WebhookEndpointForm

PAGE_SIZE = 25


def _endpoint(request: AuthenticatedHttpRequest, endpoint_id: int) -> WebhookEndpoint:
    return get_object_or_404(
        webhook_selectors.webhook_endpoint_list(user=request.user), pk=endpoint_id
    )


def _form_errors(form: WebhookEndpointForm, error: ValidationError) -> None:
    for field, messages_ in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages_)


@login_required
def webhook_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST or None, user=request.user, creating=True)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = webhooks.webhook_endpoint_create(
                user=request.user,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
                institution=form.owner_institution(),
                allow_private_addresses=form.cleaned_data.get("allow_private_addresses", False),
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, "The endpoint is registered: copy its secret below.")
            return redirect("webhooks:detail", endpoint.pk)
    return render(
        request,
        "events/webhook_list.html",
        {
            "form": form,
            "endpoints": webhook_selectors.webhook_endpoint_list(user=request.user),
        },
    )


@login_required
def webhook_detail(request: AuthenticatedHttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    initial = {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "allow_private_addresses": endpoint.allow_private_addresses,
    }
    form = WebhookEndpointForm(
        request.POST or None, initial=initial, user=request.user, creating=False
    )
    if request.method == "POST" and form.is_valid():
        try:
            webhooks.webhook_endpoint_update(
                user=request.user,
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
                allow_private_addresses=form.cleaned_data.get("allow_private_addresses"),
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, "The endpoint is saved.")
            return redirect("webhooks:detail", endpoint.pk)
    page = Paginator(
        webhook_selectors.webhook_delivery_list(endpoint=endpoint), PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return render(
        request,
        "events/webhook_detail.html",
        {
            "endpoint": endpoint,
            "form": form,
            "page": page,
            "receivable": webhooks.receivable_event_types(
                user=endpoint.user, institution=endpoint.institution
            ),
        },
    )


@login_required
@require_POST
def webhook_rotate(request: AuthenticatedHttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = webhooks.webhook_secret_rotate(
        user=request.user, endpoint=_endpoint(request, endpoint_id)
    )
    messages.success(request, "The endpoint has a new secret: the old one signs nothing more.")
    return redirect("webhooks:detail", endpoint.pk)


@login_required
@require_POST
def webhook_set_enabled(request: AuthenticatedHttpRequest, endpoint_id: int) -> HttpResponse:
    enabled = request.POST.get("enabled") == "1"
    endpoint = webhooks.webhook_endpoint_update(
        user=request.user, endpoint=_endpoint(request, endpoint_id), enabled=enabled
    )
    messages.success(
        request, "The endpoint is enabled." if enabled else "The endpoint is disabled."
    )
    return redirect("webhooks:detail", endpoint.pk)


@login_required
@require_POST
def webhook_test(request: AuthenticatedHttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    try:
        webhooks.webhook_test_send(user=request.user, endpoint=endpoint)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "A webhook.test event is on its way: see the log below.")
    return redirect("webhooks:detail", endpoint.pk)


@login_required
@require_POST
def webhook_delete(request: AuthenticatedHttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(request, endpoint_id)
    webhooks.webhook_endpoint_delete(user=request.user, endpoint=endpoint)
    messages.success(request, f"The endpoint {endpoint.url} is deleted.")
    return redirect("webhooks:list")

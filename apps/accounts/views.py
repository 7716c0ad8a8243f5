"""Portal pages: institutions, the signed-in user's profile and API tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services
from apps.accounts.forms import (
    InstitutionForm,
    MemberAddForm,
    MemberRoleForm,
    ProfileForm,
    TokenCreateForm,
)
from apps.accounts.models import Institution, Membership
from apps.accounts.typing import AuthenticatedHttpRequest
from apps.catalog import selectors as catalog_selectors
from apps.compute import selectors as compute_selectors
from apps.federation import selectors as federation_selectors

# How many of an institution's models, papers, datasets and benchmarks its page lists.
CATALOG_PREVIEW = 10


def institution_list(request: HttpRequest) -> HttpResponse:
    institutions = selectors.institution_list()
    query = request.GET.get("q", "").strip()
    if query:
        institutions = institutions.filter(name__icontains=query)
    page = Paginator(institutions, 25).get_page(request.GET.get("page"))
    return render(request, "accounts/institution_list.html", {"page": page, "query": query})


def institution_detail(request: HttpRequest, slug: str) -> HttpResponse:
    institution = get_object_or_404(selectors.institution_list(), slug=slug)
    viewer = request.user
    return render(
        request,
        "accounts/institution_detail.html",
        {
            "institution": institution,
            "memberships": selectors.membership_list(institution=institution),
            "can_manage": selectors.user_can_manage_institution(
                user=viewer, institution=institution
            ),
            "models": catalog_selectors.model_list(user=viewer).filter(institution=institution)[
                :CATALOG_PREVIEW
            ],
            "papers": catalog_selectors.paper_list(user=viewer)
            .prefetch_related(None)
            .filter(institution=institution)[:CATALOG_PREVIEW],
            "datasets": catalog_selectors.dataset_list(user=viewer)
            .prefetch_related(None)
            .filter(institution=institution)[:CATALOG_PREVIEW],
            "benchmarks": catalog_selectors.benchmark_list(user=viewer)
            .prefetch_related(None)
            .filter(institution=institution)[:CATALOG_PREVIEW],
            "credit": compute_selectors.institution_credit(
                user=viewer,
                institution=institution,
                consumed_peers_gpu_seconds=federation_selectors.remote_gpu_seconds(
                    institution=institution
                ),
            ),
        },
    )


@login_required
def profile(request: AuthenticatedHttpRequest) -> HttpResponse:
    # A copy of the user: a form that fails validation must not leave its values on
    # request.user, which the page header shows.
    account = selectors.user_with_memberships(user=request.user)
    form = ProfileForm(request.POST or None, instance=account)
    if request.method == "POST" and form.is_valid():
        try:
            services.user_profile_update(user=account, **form.cleaned_data)
        except ValidationError as error:
            for field, field_errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, field_errors)
        else:
            messages.success(request, "Your profile has been saved.")
            return redirect("accounts:profile")
    return render(request, "accounts/profile.html", {"form": form, "profile_user": account})


NEW_TOKEN_SESSION_KEY = "accounts:new-api-token"  # noqa: S105 - a key name, not a secret


@login_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _token, secret = services.api_token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.cleaned_data["expires_in_days"],
        )
        # Post/redirect/get: the secret rides in the session to the next page view only, so
        # reloading the page neither shows it again nor creates a second token.
        request.session[NEW_TOKEN_SESSION_KEY] = secret
        return redirect("accounts:tokens")
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "new_secret": request.session.pop(NEW_TOKEN_SESSION_KEY, None),
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


def _managed_institution(request: AuthenticatedHttpRequest, slug: str) -> Institution:
    institution = get_object_or_404(Institution, slug=slug)
    if not selectors.user_can_manage_institution(user=request.user, institution=institution):
        raise PermissionDenied(f"Only admins of {institution.name} and platform staff can do this.")
    return institution


def _managed_membership(request: AuthenticatedHttpRequest, slug: str, username: str) -> Membership:
    institution = _managed_institution(request, slug)
    return get_object_or_404(
        selectors.membership_list(institution=institution), user__username=username
    )


def _report(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


@login_required
def institution_manage(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    institution = _managed_institution(request, slug)
    form = InstitutionForm(request.POST or None, instance=institution)
    if request.method == "POST" and form.is_valid():
        try:
            services.institution_update(institution=institution, **form.cleaned_data)
        except ValidationError as error:
            _report(request, error)
        else:
            messages.success(request, f"{institution.name} has been saved.")
            return redirect("accounts:institution-manage", slug=slug)
    return render(
        request,
        "accounts/institution_manage.html",
        {
            "institution": institution,
            "form": form,
            "add_form": MemberAddForm(),
            "memberships": selectors.membership_list(institution=institution),
            "roles": Membership.Role.choices,
        },
    )


@login_required
@require_POST
def member_add(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    institution = _managed_institution(request, slug)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        for field_errors in form.errors.as_data().values():
            for error in field_errors:
                _report(request, error)
    else:
        try:
            membership = services.membership_add(
                institution=institution,
                user=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as error:
            _report(request, error)
        else:
            messages.success(request, f"{membership.user.display_name} has been added.")
    return redirect("accounts:institution-manage", slug=slug)


@login_required
@require_POST
def member_change_role(request: AuthenticatedHttpRequest, slug: str, username: str) -> HttpResponse:
    membership = _managed_membership(request, slug, username)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the offered roles.")
    else:
        try:
            services.membership_change_role(membership=membership, role=form.cleaned_data["role"])
        except ValidationError as error:
            _report(request, error)
        else:
            messages.success(
                request,
                f"{membership.user.display_name} is now {membership.get_role_display().lower()}.",
            )
    return redirect("accounts:institution-manage", slug=slug)


@login_required
@require_POST
def member_remove(request: AuthenticatedHttpRequest, slug: str, username: str) -> HttpResponse:
    membership = _managed_membership(request, slug, username)
    try:
        services.membership_remove(membership=membership)
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"{membership.user.display_name} has been removed.")
    return redirect("accounts:institution-manage", slug=slug)

"""Portal pages of federation for platform staff: peers (add, approve, refuse, suspend,
reinstate, revoke, sync now), each peering's history, and this node's keys (rotate)."""

from django import forms
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.typing import AuthenticatedHttpRequest
from apps.federation import client, keys, services
from apps.federation.models import Peer
from apps.federation.services import LOCAL_TRANSITIONS


class PeerAddForm(forms.Form):
    base_url = forms.URLField(
        label="Peer node's address", max_length=255, assume_scheme="https",
        help_text="Its base URL, e.g. https://exchange.example.edu",
    )  # fmt: skip


class PeerActionForm(forms.Form):
    note = forms.CharField(max_length=500, required=False)


def _errors(error: ValidationError) -> str:
    return " ".join(error.messages)


@staff_member_required
def peer_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = PeerAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            peer = services.peer_add(base_url=form.cleaned_data["base_url"], actor=request.user)
        except ValidationError as error:
            form.add_error("base_url", _errors(error))
        else:
            messages.success(request, f"Asked {peer.node_id} to peer; its staff decides there.")
            return redirect("federation:peer-detail", peer_id=peer.pk)
    return render(
        request,
        "federation/peer_list.html",
        {
            "peers": Peer.objects.order_by("node_id"),
            "form": form,
            "keys": keys.published_keys(),
            "node_key": keys.node_key_ensure(),
        },
    )


@staff_member_required
def peer_detail(request: HttpRequest, peer_id: int) -> HttpResponse:
    peer = get_object_or_404(Peer, pk=peer_id)
    actions = [
        action
        for action, (allowed_from, _) in LOCAL_TRANSITIONS.items()
        if peer.state in allowed_from and not (action == "reinstate" and peer.suspended_by_peer)
    ]
    return render(
        request,
        "federation/peer_detail.html",
        {
            "peer": peer,
            "events": peer.events.select_related("actor")[:100],
            "actions": actions,
            "pending": peer.pending.count(),
            "keys": peer.keys.all(),
        },
    )


@staff_member_required
@require_POST
def peer_action(request: AuthenticatedHttpRequest, peer_id: int, action: str) -> HttpResponse:
    peer = get_object_or_404(Peer, pk=peer_id)
    if action == "sync":
        try:
            report = services.peer_sync_now(peer_id=peer.pk)
        except (client.FederationError, ValidationError, ValueError) as error:
            messages.error(request, f"The sync stopped: {error}")
        else:
            messages.success(
                request,
                f"Synced: {report.upserted} records updated, {report.deleted} removed, "
                f"{report.pending} waiting, {report.rejected} refused.",
            )
        return redirect("federation:peer-detail", peer_id=peer.pk)
    if action not in LOCAL_TRANSITIONS:
        raise Http404("No such action.")
    form = PeerActionForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    try:
        peer = services.peer_transition(peer=peer, action=action, actor=request.user, note=note)
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(request, f"The peering is now {peer.get_state_display().lower()}.")
    return redirect("federation:peer-detail", peer_id=peer.pk)


@staff_member_required
@require_POST
def key_rotate(request: HttpRequest) -> HttpResponse:
    try:
        key = keys.node_key_rotate()
    except ValidationError as error:
        messages.error(request, _errors(error))
    else:
        messages.success(
            request, f"This node now signs with {key.key_id}; the old key is retiring."
        )
    return redirect("federation:peer-list")

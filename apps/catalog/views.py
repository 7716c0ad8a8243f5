"""Portal pages of the catalogue: models and their versions, papers, datasets, benchmarks, their
discussions, and search. Reads go through the selectors (which apply visibility), writes through
the services; every page works without JavaScript."""

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError as ApiValidationError

from apps.accounts.typing import AuthenticatedHttpRequest
from apps.catalog import selectors, services
from apps.catalog.api import (
    SEARCH_MAX_PAGE,
    SEARCH_PAGE_SIZE,
    BenchmarkFilter,
    DatasetFilter,
    ModelFilter,
    PaperFilter,
    run_search,
    search_params,
)
from apps.catalog.bibtex import papers_to_bibtex
from apps.catalog.forms import (
    ArtifactUploadForm,
    BenchmarkFilterForm,
    BenchmarkForm,
    BibtexImportForm,
    CommentForm,
    DatasetFilterForm,
    DatasetForm,
    ModelCreateForm,
    ModelEditForm,
    ModelFilterForm,
    PaperFilterForm,
    PaperForm,
    SearchForm,
    VersionForm,
    show_refused_upload,
)
from apps.catalog.markdown import render_markdown
from apps.catalog.models import Benchmark, Comment, ModelVersion, Paper, ResearchModel
from apps.catalog.pagination import CachedCountPaginator
from apps.catalog.presenters import paper_draft
from apps.catalog.uploads import ArtifactTooLarge
from worker.evaluators import evaluator_specs

PAGE_SIZE = 20
IMPORT_REPORT_SESSION_KEY = "catalog:bibtex-import-report"

Discussed = ResearchModel | Paper | Benchmark


def _record_url(record: Discussed) -> str:
    if isinstance(record, ResearchModel):
        return reverse(
            "catalog:model-detail",
            kwargs={"institution_slug": record.institution.slug, "slug": record.slug},
        )
    if isinstance(record, Paper):
        return reverse("catalog:paper-detail", kwargs={"paper_id": record.pk})
    return reverse("catalog:benchmark-detail", kwargs={"benchmark_id": record.pk})


def _discussion_url(record: Discussed) -> str:
    if isinstance(record, ResearchModel):
        return reverse("catalog:model-comment", args=[record.institution.slug, record.slug])
    if isinstance(record, Paper):
        return reverse("catalog:paper-comment", args=[record.pk])
    return reverse("catalog:benchmark-comment", args=[record.pk])


def _add_errors(
    form: forms.Form, error: ValidationError, *, rename: dict[str, str] | None = None
) -> None:
    """Puts a service's refusal on the fields it names; the rest goes above the form."""
    for field, errors in error.update_error_dict({}).items():
        field = (rename or {}).get(field, field)
        form.add_error(field if field in form.fields else None, errors)


def _page(request: HttpRequest, queryset) -> Page:
    return CachedCountPaginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _accepts_uploads(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For views that take files. An upload over the node's limit is refused while the request
    body is read, which the CSRF check does first: so the check runs inside, and a refusal
    comes back as the view's own page, called with `too_large` and without the body.

    Artifact rows commit one by one, as the API stores them; the record that uses them is
    written in the service's own transaction."""
    protected = csrf_protect(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return protected(request, *args, **kwargs)
        except ArtifactTooLarge as error:
            return view(request, *args, too_large=error, **kwargs)

    return transaction.non_atomic_requests(csrf_exempt(login_required(wrapper)))


def _store_files(request: AuthenticatedHttpRequest, form: ArtifactUploadForm) -> bool:
    """Stores the posted files next to the ones already uploaded (form.stored); False, with the
    reason on the form, when a file is refused."""
    for upload in form.cleaned_data["uploads"]:
        try:
            artifact = services.artifact_store(user=request.user, upload=upload)
        except ValidationError as error:
            _add_errors(form, error, rename={"file": "uploads", "sha256": "uploads"})
            return False
        form.stored.append((upload.name, artifact.sha256))
    return True


@dataclass(frozen=True)
class CommentNode:
    comment: Comment
    body: SafeString
    can_edit: bool
    can_remove: bool
    replies: list["CommentNode"]


def _discussion(request: HttpRequest, target: Discussed) -> dict:
    comments = list(selectors.comment_list(target=target))
    can_moderate = bool(comments) and selectors.user_can_moderate(
        user=request.user, comment=comments[0]
    )
    replies: dict[int | None, list[Comment]] = defaultdict(list)
    for comment in comments:
        replies[comment.parent_id].append(comment)

    def node(comment: Comment) -> CommentNode:
        live = comment.removed_at is None
        own = live and request.user.is_authenticated and comment.author_id == request.user.pk
        return CommentNode(
            comment=comment,
            body=render_markdown(comment.body) if live else SafeString(""),
            can_edit=own,
            can_remove=own or (live and can_moderate),
            replies=[node(reply) for reply in replies[comment.pk]],
        )

    return {
        "comments": [node(comment) for comment in replies[None]],
        "discussion_url": _discussion_url(target),
    }


def _post_comment(request: AuthenticatedHttpRequest, target: Discussed) -> HttpResponse:
    page_url = _record_url(target)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write something before posting a comment.")
        return redirect(f"{page_url}#discussion")
    parent = None
    if form.cleaned_data["parent"] is not None:
        parent = get_object_or_404(
            selectors.comment_list(target=target),
            pk=form.cleaned_data["parent"],
        )
    try:
        comment = services.comment_create(
            user=request.user, target=target, body=form.cleaned_data["body"], parent=parent
        )
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return redirect(f"{page_url}#discussion")
    messages.success(request, "Your comment has been posted.")
    return redirect(f"{page_url}#comment-{comment.pk}")


def _visible_comment(request: HttpRequest, comment_id: int) -> Comment:
    return get_object_or_404(
        selectors.comment_visible_list(user=request.user).select_related(
            "model__institution", "paper", "benchmark"
        ),
        pk=comment_id,
    )


@login_required
@require_POST
def comment_edit(request: AuthenticatedHttpRequest, comment_id: int) -> HttpResponse:
    comment = _visible_comment(request, comment_id)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A comment needs some text; to take it back, remove it.")
    else:
        try:
            services.comment_edit(
                user=request.user, comment=comment, body=form.cleaned_data["body"]
            )
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
        else:
            messages.success(request, "Your comment has been saved.")
    target = comment.model or comment.paper or comment.benchmark
    return redirect(f"{_record_url(target)}#comment-{comment.pk}")  # type: ignore[arg-type]


@login_required
@require_POST
def comment_remove(request: AuthenticatedHttpRequest, comment_id: int) -> HttpResponse:
    comment = _visible_comment(request, comment_id)
    services.comment_remove(user=request.user, comment=comment)
    messages.success(request, "The comment has been removed.")
    target = comment.model or comment.paper or comment.benchmark
    return redirect(f"{_record_url(target)}#comment-{comment.pk}")  # type: ignore[arg-type]


def model_list(request: HttpRequest) -> HttpResponse:
    models = ModelFilter(request.GET, queryset=selectors.model_list(user=request.user)).qs
    return render(
        request,
        "catalog/model_list.html",
        {"filters": ModelFilterForm(request.GET), "page": _page(request, models)},
    )


def model_detail(request: HttpRequest, institution_slug: str, slug: str) -> HttpResponse:
    model = selectors.model_by_slug(user=request.user, institution_slug=institution_slug, slug=slug)
    versions = list(model.versions.all())
    version: ModelVersion | None
    if label := request.GET.get("version"):
        version = selectors.version_get(user=request.user, model=model, label=label)
    else:
        version = next((version for version in versions if version.is_published), None)
    return render(
        request,
        "catalog/model_detail.html",
        {
            "model": model,
            "card": render_markdown(model.card),
            "version": version,
            "versions": versions,
            "can_edit": selectors.user_can_edit(user=request.user, record=model),
            **_discussion(request, model),
        },
    )


@login_required
def model_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ModelCreateForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            model = services.model_create(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"{model.name} has been created. Upload its first version.")
            return redirect(_record_url(model))
    return render(request, "catalog/model_form.html", {"form": form})


def _editable_model(
    request: AuthenticatedHttpRequest, institution_slug: str, slug: str
) -> ResearchModel:
    model = selectors.model_by_slug(user=request.user, institution_slug=institution_slug, slug=slug)
    if not selectors.user_can_edit(user=request.user, record=model):
        raise PermissionDenied(
            "Only its creator, its institution's admins and platform staff can change this model."
        )
    return model


@login_required
def model_edit(request: AuthenticatedHttpRequest, institution_slug: str, slug: str) -> HttpResponse:
    model = _editable_model(request, institution_slug, slug)
    initial = {
        "name": model.name,
        "summary": model.summary,
        "card": model.card,
        "license": model.license,
        "task": model.task,
        "tags": [tag.name for tag in model.tags.all()],
        "visibility": model.visibility,
    }
    form = ModelEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.model_update(user=request.user, model=model, **form.cleaned_data)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"{model.name} has been saved.")
            return redirect(_record_url(model))
    return render(request, "catalog/model_form.html", {"form": form, "model": model})


@_accepts_uploads
def version_create(
    request: AuthenticatedHttpRequest,
    institution_slug: str,
    slug: str,
    too_large: ArtifactTooLarge | None = None,
) -> HttpResponse:
    model = _editable_model(request, institution_slug, slug)
    taken_labels = {version.label for version in model.versions.all()}
    if too_large is not None:
        form = VersionForm(user=request.user, taken_labels=taken_labels)
        show_refused_upload(form, field="uploads", message=str(too_large.detail))
        return render(
            request, "catalog/version_form.html", {"form": form, "model": model}, status=413
        )
    form = VersionForm(
        request.POST or None, request.FILES or None, user=request.user, taken_labels=taken_labels
    )
    # The label is checked by the form before any file is stored.
    if request.method == "POST" and form.is_valid() and _store_files(request, form):
        data = form.cleaned_data
        try:
            version = services.version_create(
                user=request.user,
                model=model,
                label=data["label"],
                release_notes=data["release_notes"],
                files=form.stored,
                publish=data["publish"],
            )
        except ValidationError as error:
            _add_errors(form, error, rename={"files": "uploads"})
        else:
            state = "published" if version.is_published else "saved as a draft"
            messages.success(request, f"Version {version.label} has been {state}.")
            return redirect(f"{_record_url(model)}?{urlencode({'version': version.label})}")
    return render(request, "catalog/version_form.html", {"form": form, "model": model})


@login_required
@require_POST
def version_publish(
    request: AuthenticatedHttpRequest, institution_slug: str, slug: str, label: str
) -> HttpResponse:
    model = _editable_model(request, institution_slug, slug)
    version = selectors.version_get(user=request.user, model=model, label=label)
    try:
        services.version_publish(user=request.user, version=version)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Version {version.label} has been published.")
    return redirect(f"{_record_url(model)}?{urlencode({'version': version.label})}")


@login_required
@require_POST
def model_comment(
    request: AuthenticatedHttpRequest, institution_slug: str, slug: str
) -> HttpResponse:
    model = get_object_or_404(
        selectors.model_list(user=request.user), institution__slug=institution_slug, slug=slug
    )
    return _post_comment(request, model)


def paper_list(request: HttpRequest) -> HttpResponse:
    papers = PaperFilter(request.GET, queryset=selectors.paper_list(user=request.user)).qs
    export_query = request.GET.copy()
    export_query.pop("page", None)
    return render(
        request,
        "catalog/paper_list.html",
        {
            "filters": PaperFilterForm(request.GET),
            "page": _page(request, papers),
            "bibtex_url": f"{reverse('paper-bibtex-export')}?{export_query.urlencode()}",
        },
    )


def paper_detail(request: HttpRequest, paper_id: int) -> HttpResponse:
    paper = selectors.paper_get(user=request.user, paper_id=paper_id)
    bibtex = papers_to_bibtex([paper_draft(paper)])
    return render(
        request,
        "catalog/paper_detail.html",
        {
            "paper": paper,
            "bibtex": bibtex,
            "bibtex_rows": min(bibtex.count("\n") + 1, 20),
            "models": selectors.model_list(user=request.user).filter(papers=paper),
            **_discussion(request, paper),
        },
    )


@_accepts_uploads
def paper_create(
    request: AuthenticatedHttpRequest, too_large: ArtifactTooLarge | None = None
) -> HttpResponse:
    if too_large is not None:
        form = PaperForm(user=request.user)
        show_refused_upload(form, field="pdf", message=str(too_large.detail))
        return render(request, "catalog/paper_form.html", {"form": form}, status=413)
    form = PaperForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        pdf = None
        if data["pdf"]:
            try:
                pdf = services.artifact_store(user=request.user, upload=data["pdf"])
            except ValidationError as error:
                _add_errors(form, error, rename={"file": "pdf"})
        if not form.errors:
            try:
                paper = services.paper_create(
                    user=request.user,
                    institution=data["institution"],
                    title=data["title"],
                    authors=data["authors"],
                    abstract=data["abstract"],
                    venue=data["venue"],
                    year=data["year"],
                    doi=data["doi"],
                    arxiv_id=data["arxiv_id"],
                    pdf=pdf,
                    visibility=data["visibility"],
                )
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, "The paper has been added.")
                return redirect(_record_url(paper))
    return render(request, "catalog/paper_form.html", {"form": form})


@_accepts_uploads
def paper_import(
    request: AuthenticatedHttpRequest, too_large: ArtifactTooLarge | None = None
) -> HttpResponse:
    if too_large is not None:
        form = BibtexImportForm(user=request.user)
        show_refused_upload(form, field="file", message=str(too_large.detail))
        return render(request, "catalog/paper_import.html", {"form": form}, status=413)
    form = BibtexImportForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        report = services.papers_import_bibtex(
            user=request.user,
            institution=form.cleaned_data["institution"],
            text=form.cleaned_data["text"],
            visibility=form.cleaned_data["visibility"],
        )
        if not report.created and not report.errors:
            form.add_error("bibtex", "No BibTeX entries were found.")
        else:
            # Post/redirect/get: a reload shows the report, it does not import again.
            request.session[IMPORT_REPORT_SESSION_KEY] = {
                "created": [paper.pk for paper in report.created],
                "errors": report.errors,
            }
            return redirect("catalog:paper-import")
    shown = (
        request.session.pop(IMPORT_REPORT_SESSION_KEY, None) if request.method == "GET" else None
    )
    context: dict = {"form": form, "report": shown}
    if shown is not None:
        context["created"] = selectors.paper_list(user=request.user).filter(pk__in=shown["created"])
    return render(request, "catalog/paper_import.html", context)


@login_required
@require_POST
def paper_comment(request: AuthenticatedHttpRequest, paper_id: int) -> HttpResponse:
    paper = get_object_or_404(selectors.paper_list(user=request.user), pk=paper_id)
    return _post_comment(request, paper)


def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = DatasetFilter(request.GET, queryset=selectors.dataset_list(user=request.user)).qs
    return render(
        request,
        "catalog/dataset_list.html",
        {"filters": DatasetFilterForm(request.GET), "page": _page(request, datasets)},
    )


def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
    return render(
        request,
        "catalog/dataset_detail.html",
        {
            "dataset": dataset,
            "description": render_markdown(dataset.description),
            "benchmarks": selectors.benchmark_list(user=request.user).filter(dataset=dataset),
            "papers": selectors.paper_list(user=request.user).filter(datasets=dataset),
        },
    )


@_accepts_uploads
def dataset_create(
    request: AuthenticatedHttpRequest, too_large: ArtifactTooLarge | None = None
) -> HttpResponse:
    if too_large is not None:
        form = DatasetForm(user=request.user)
        show_refused_upload(form, field="uploads", message=str(too_large.detail))
        return render(request, "catalog/dataset_form.html", {"form": form}, status=413)
    form = DatasetForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid() and _store_files(request, form):
        data = form.cleaned_data
        try:
            dataset = services.dataset_create(
                user=request.user,
                institution=data["institution"],
                name=data["name"],
                slug=data["slug"],
                license=data["license"],
                description=data["description"],
                visibility=data["visibility"],
                tags=data["tags"],
                files=form.stored,
            )
        except ValidationError as error:
            _add_errors(form, error, rename={"files": "uploads"})
        else:
            messages.success(request, f"{dataset.name} has been published.")
            return redirect("catalog:dataset-detail", dataset_id=dataset.pk)
    return render(request, "catalog/dataset_form.html", {"form": form})


def benchmark_list(request: HttpRequest) -> HttpResponse:
    benchmarks = BenchmarkFilter(
        request.GET, queryset=selectors.benchmark_list(user=request.user)
    ).qs
    return render(
        request,
        "catalog/benchmark_list.html",
        {"filters": BenchmarkFilterForm(request.GET), "page": _page(request, benchmarks)},
    )


def benchmark_detail(request: HttpRequest, benchmark_id: int) -> HttpResponse:
    benchmark = selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
    # A benchmark may be public while its dataset is not: the link is shown only to those
    # who may follow it (the selector says which, for this viewer).
    dataset = benchmark.dataset if benchmark.dataset_visible else None  # type: ignore[attr-defined]
    return render(
        request,
        "catalog/benchmark_detail.html",
        {
            "benchmark": benchmark,
            "description": render_markdown(benchmark.description),
            "dataset": dataset,
            "config": json.dumps(benchmark.evaluator_config, indent=2, sort_keys=True),
            "models": selectors.model_list(user=request.user).filter(benchmarks=benchmark),
            "papers": selectors.paper_list(user=request.user).filter(benchmarks=benchmark),
            **_discussion(request, benchmark),
        },
    )


@login_required
def benchmark_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = BenchmarkForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            benchmark = services.benchmark_create(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"{benchmark.name} has been published.")
            return redirect(_record_url(benchmark))
    evaluators = sorted(evaluator_specs().values(), key=lambda spec: spec.name)
    return render(request, "catalog/benchmark_form.html", {"form": form, "evaluators": evaluators})


@login_required
@require_POST
def benchmark_comment(request: AuthenticatedHttpRequest, benchmark_id: int) -> HttpResponse:
    benchmark = get_object_or_404(selectors.benchmark_list(user=request.user), pk=benchmark_id)
    return _post_comment(request, benchmark)


def _filled(query: QueryDict) -> QueryDict:
    """The parameters a search form sent with a value (an empty select means "any")."""
    filled = QueryDict(mutable=True)
    for key in query:
        values = [value for value in query.getlist(key) if value.strip()]
        if values:
            filled.setlist(key, values)
    return filled


def _hit_urls(request: HttpRequest, hits: list[selectors.SearchHit]) -> list[str]:
    model_ids = [hit.id for hit in hits if hit.type == "model"]
    model_slugs = {
        pk: (institution_slug, slug)
        for pk, institution_slug, slug in selectors.model_list(user=request.user)
        .prefetch_related(None)
        .filter(pk__in=model_ids)
        .values_list("pk", "institution__slug", "slug")
    }
    urls = []
    for hit in hits:
        if hit.type == "model":
            institution_slug, slug = model_slugs[hit.id]
            urls.append(reverse("catalog:model-detail", args=[institution_slug, slug]))
        else:
            urls.append(reverse(f"catalog:{hit.type}-detail", args=[hit.id]))
    return urls


def search(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    context: dict = {"form": form}
    if form.is_bound and form.is_valid() and form.cleaned_data["q"].strip():
        try:
            params = search_params(_filled(request.GET))
        except ApiValidationError as error:
            for field, problems in error.detail.items():  # type: ignore[union-attr]
                form.add_error(field if field in form.fields else None, [str(p) for p in problems])
        else:
            results = run_search(request.user, params)
            number = params["page"]
            context.update(
                results=results,
                hits=list(zip(results.hits, _hit_urls(request, results.hits), strict=True)),
                page_number=number,
                previous_page=number - 1 if number > 1 else None,
                next_page=(
                    number + 1
                    if number < SEARCH_MAX_PAGE and number * SEARCH_PAGE_SIZE < results.total
                    else None
                ),
            )
    return render(request, "catalog/search.html", context)

"""Catalogue records in the shapes other formats need."""

from apps.catalog.bibtex import AuthorDraft, PaperDraft
from apps.catalog.models import Paper


def paper_draft(paper: Paper) -> PaperDraft:
    """A paper as the BibTeX exporter takes it (authors prefetched by the selector)."""
    return PaperDraft(
        key=paper.bibtex_key,
        title=paper.title,
        abstract=paper.abstract,
        authors=tuple(
            AuthorDraft(name=author.name, orcid=author.orcid) for author in paper.authors.all()
        ),
        venue=paper.venue,
        year=paper.year,
        doi=paper.doi,
        arxiv_id=paper.arxiv_id,
    )

import bibtexparser
import pytest

from apps.catalog.bibtex import AuthorDraft, EntryError, PaperDraft, papers_to_bibtex, parse_bibtex

LIBRARY_WITH_PROBLEMS = r"""% Exported from a reference manager
@article{lecun2015deep,
  title   = {Deep learning},
  author  = {LeCun, Yann and Bengio, Yoshua and Hinton, Geoffrey},
  journal = {Nature},
  volume  = {521},
  year    = {2015},
  doi     = {https://doi.org/10.1038/NATURE14539}
}

@article{broken2020,
  title  = {An entry whose title never closes,
  year   = {2020}

@inproceedings{vaswani2017attention,
  title         = {Attention is All you Need},
  author        = {Vaswani, Ashish and Shazeer, Noam and Parmar, Niki},
  booktitle     = {Advances in Neural Information Processing Systems},
  year          = 2017,
  eprint        = {1706.03762},
  archivePrefix = {arXiv}
}

@misc{lecun2015deep,
  title = {A second entry reusing a key},
  year  = {2016}
}

@article{baddoi2019,
  title = {A paper with a mistyped DOI},
  doi   = {10.x},
  year  = {2019}
}

@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition},
  year      = {2016},
  doi       = {10.1109/CVPR.2016.90}
}
"""


def test_a_library_with_broken_entries_still_yields_every_good_entry():
    drafts, errors = parse_bibtex(LIBRARY_WITH_PROBLEMS)

    assert [draft.key for draft in drafts] == [
        "lecun2015deep",
        "vaswani2017attention",
        "he2016deep",
    ]
    assert [(error.key, error.line) for error in errors] == [
        ("broken2020", 11),
        ("lecun2015deep", 24),
        ("baddoi2019", 29),
    ]
    assert errors[0].message.startswith("syntax error:")
    assert errors[1].message == "duplicate key: the entry on line 2 already uses it"
    assert errors[2].message.startswith("doi: '10.x' is not a DOI")


def test_an_entry_becomes_a_draft_with_normalised_identifiers():
    drafts, _ = parse_bibtex(LIBRARY_WITH_PROBLEMS)

    assert drafts[0] == PaperDraft(
        key="lecun2015deep",
        title="Deep learning",
        abstract="",
        authors=(
            AuthorDraft("Yann LeCun"),
            AuthorDraft("Yoshua Bengio"),
            AuthorDraft("Geoffrey Hinton"),
        ),
        venue="Nature",
        year=2015,
        doi="10.1038/nature14539",
        arxiv_id="",
    )
    assert drafts[1].venue == "Advances in Neural Information Processing Systems"
    assert drafts[1].year == 2017
    assert drafts[1].arxiv_id == "1706.03762"
    assert drafts[2].doi == "10.1109/cvpr.2016.90"


def test_latex_accents_are_decoded_and_protective_braces_dropped():
    drafts, errors = parse_bibtex(
        r"""
        @article{muller2021,
          title   = {{BERT} Goes to {M}{\"u}nchen: 50\% Fewer Parameters \& More},
          author  = {M{\"u}ller, J{\"o}rg and Fran\c{c}ois, Ren\'{e}e and {Google DeepMind}},
          journal = {Journal f{\"u}r Maschinelles Lernen},
          year    = {2021}
        }
        """
    )

    assert errors == []
    assert drafts[0].title == "BERT Goes to München: 50% Fewer Parameters & More"
    assert [author.name for author in drafts[0].authors] == [
        "Jörg Müller",
        "Renée François",
        "Google DeepMind",
    ]
    assert drafts[0].venue == "Journal für Maschinelles Lernen"


def test_authors_are_named_first_name_first_without_orcids_or_et_al():
    drafts, _ = parse_bibtex(
        r"""
        @book{knuth1984,
          title  = {The {\TeX}book},
          author = {Donald E. Knuth and van Beethoven, Ludwig and King, Jr., Martin Luther
                    and others},
          orcid  = {0000-0002-1825-0097},
        }
        """
    )

    assert drafts[0].authors == (
        AuthorDraft("Donald E. Knuth", orcid=""),
        AuthorDraft("Ludwig van Beethoven", orcid=""),
        AuthorDraft("Martin Luther King Jr.", orcid=""),
    )


def test_a_multi_line_abstract_keeps_its_paragraphs():
    drafts, _ = parse_bibtex(
        """
        @misc{abstract2020,
          title    = {Abstracts},
          abstract = {The first paragraph
                      continues here, at 95% accuracy.

                      The second paragraph.}
        }
        """
    )

    assert drafts[0].abstract == (
        "The first paragraph continues here, at 95% accuracy.\n\nThe second paragraph."
    )


@pytest.mark.parametrize(
    "fields",
    [
        "eprint = {1706.03762v5}, archiveprefix = {arXiv}",
        "eprint = {arXiv:1706.03762v5}, eprinttype = {arxiv}",
        "arxiv = {https://arxiv.org/abs/1706.03762v5}",
    ],
)
def test_the_arxiv_id_is_read_from_eprint_or_arxiv_fields(fields):
    drafts, errors = parse_bibtex(f"@misc{{vaswani2017, title = {{Attention}}, {fields}}}")

    assert errors == []
    assert drafts[0].arxiv_id == "1706.03762v5"


def test_an_eprint_of_another_archive_is_not_taken_for_an_arxiv_id():
    drafts, errors = parse_bibtex(
        "@misc{hal2020, title = {HAL}, eprint = {hal-01234567}, eprinttype = {HAL}}"
    )

    assert errors == []
    assert drafts[0].arxiv_id == ""


def test_a_biblatex_date_gives_the_year():
    drafts, _ = parse_bibtex("@online{x, title = {Dated}, date = {2017-06-12}}")

    assert drafts[0].year == 2017


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("year = {2017}", "title: missing"),
        ("title = {}, year = {2017}", "title: missing"),
        ("title = {T}, year = {17}", "year: '17' is not a year"),
        ("title = {T}, year = {3017}", "year: '3017' is not a year"),
        ("title = {T}, year = {in press}", "year: 'in press' is not a year"),
        ("title = {T}, arxiv = {1706.3762}", "arxiv: '1706.3762' is not an arXiv id"),
        (
            "title = {T}, eprint = {hep-th/99}, archiveprefix = {arXiv}",
            "eprint: 'hep-th/99' is not an arXiv id",
        ),
        ("title = {T}, doi = {nature14539}", "doi: 'nature14539' is not a DOI"),
        ("title = {T}, title = {Again}", "duplicate field: title"),
        ("title = {T}, author = {Smith, John, Jr, Extra}", "author: cannot read the name"),
    ],
)
def test_an_invalid_field_makes_the_entry_an_error_naming_the_field(fields, message):
    drafts, errors = parse_bibtex(f"@article{{smith2020,\n  {fields}\n}}\n")

    assert drafts == []
    assert len(errors) == 1
    assert errors[0].key == "smith2020"
    assert errors[0].line == 1
    assert errors[0].message.startswith(message)


def test_every_problem_of_an_entry_is_reported_together():
    _, errors = parse_bibtex("@article{both, title = {T}, doi = {10.x}, year = {20x5}}")

    assert errors[0].message == (
        "doi: '10.x' is not a DOI: expected 10.<registrant>/<suffix>, like 10.1038/nature14539; "
        "year: '20x5' is not a year: expected four digits between 1000 and 2100"
    )


def test_an_entry_whose_key_cannot_be_read_is_reported_with_its_line():
    _, errors = parse_bibtex("@article{good, title = {Fine}}\n\n@article{\n")

    assert errors == [EntryError("(unreadable entry)", 3, errors[0].message)]
    assert errors[0].message.startswith("syntax error:")


@pytest.mark.parametrize(
    "text", ["", "   \n", "% only a comment\n", "not bibtex at all", "@comment{x}"]
)
def test_text_without_entries_gives_no_drafts_and_no_errors(text):
    assert parse_bibtex(text) == ([], [])


ROUND_TRIP_PAPERS = [
    PaperDraft(
        key="vaswani2017attention",
        title="Attention Is All You Need",
        abstract="Sequence transduction models are recurrent.\n\nWe propose a new one.",
        authors=(AuthorDraft("Ashish Vaswani"), AuthorDraft("Noam Shazeer")),
        venue="Advances in Neural Information Processing Systems",
        year=2017,
        doi="",
        arxiv_id="1706.03762",
    ),
    PaperDraft(
        key="lecun2015deep",
        title="Deep learning",
        abstract="",
        authors=(AuthorDraft("Yann LeCun"), AuthorDraft("Yoshua Bengio")),
        venue="Nature",
        year=2015,
        doi="10.1038/nature14539",
        arxiv_id="",
    ),
    PaperDraft(
        key="muller-special",
        title=r"R&D at 50% of $5: #1 a_b {braces} \ ~ ^ -- ``quoted''",
        abstract="x < y & z",
        authors=(
            AuthorDraft("Jörg Müller"),
            AuthorDraft("Ludwig van Beethoven"),
            AuthorDraft("Simon and Schuster"),
            AuthorDraft("Plato"),
        ),
        venue="Proceedings of the Workshop on Reproducibility",
        year=None,
        doi="10.1002/(sici)1097-4636(199812)43:4<385::aid-jbm6>3.0.co;2-q",
        arxiv_id="hep-th/9901001v2",
    ),
    PaperDraft(
        key="preprint",
        title="A preprint without a venue",
        abstract="",
        authors=(),
        venue="",
        year=2024,
        doi="",
        arxiv_id="2401.00001",
    ),
]


def test_exported_papers_parse_back_to_the_same_drafts():
    drafts, errors = parse_bibtex(papers_to_bibtex(ROUND_TRIP_PAPERS))

    assert errors == []
    assert drafts == ROUND_TRIP_PAPERS


def test_export_writes_author_last_name_first_and_arxiv_as_eprint():
    text = papers_to_bibtex(ROUND_TRIP_PAPERS[:1])

    assert text.startswith("@article{vaswani2017attention,\n")
    assert "title = {{Attention Is All You Need}}" in text
    assert "author = {Vaswani, Ashish and Shazeer, Noam}" in text
    assert "journal = {Advances in Neural Information Processing Systems}" in text
    assert "eprint = {1706.03762}" in text
    assert "archiveprefix = {arXiv}" in text


def test_export_picks_the_entry_type_from_the_venue():
    text = papers_to_bibtex(ROUND_TRIP_PAPERS)
    entry_types = [entry.entry_type for entry in bibtexparser.parse_string(text).entries]

    # A venue naming a meeting (proceedings, conference, workshop, symposium) is a booktitle.
    assert entry_types == ["article", "article", "inproceedings", "misc"]


def test_export_escapes_special_characters_and_keeps_braces_balanced():
    text = papers_to_bibtex(ROUND_TRIP_PAPERS[2:3])
    title_line = next(line for line in text.splitlines() if line.lstrip().startswith("title"))

    for escaped in (r"\&", r"\%", r"\$", r"\#", r"\_"):
        assert escaped in title_line
    # BibTeX counts every brace, escaped or not, so literal braces are written as macros.
    assert title_line.count("{") == title_line.count("}")
    assert r"\{" not in text


def test_export_generates_distinct_keys_for_drafts_without_one():
    paper = PaperDraft(
        key="",
        title="The Attention Mechanism",
        abstract="",
        authors=(AuthorDraft("Jörg Müller"),),
        venue="",
        year=2017,
        doi="",
        arxiv_id="",
    )
    untitled = PaperDraft("", "", "", (), "", None, "", "")
    kept = PaperDraft("muller2017attention", "Kept", "", (), "", None, "", "")

    text = papers_to_bibtex([paper, paper, kept, untitled])
    keys = [entry.key for entry in bibtexparser.parse_string(text).entries]

    assert keys == [
        "muller2017attention-2",
        "muller2017attention-3",
        "muller2017attention",
        "paper",
    ]


def test_export_gives_a_repeated_own_key_a_suffix():
    paper = ROUND_TRIP_PAPERS[1]

    text = papers_to_bibtex([paper, paper])
    drafts, errors = parse_bibtex(text)

    assert errors == []
    assert [draft.key for draft in drafts] == ["lecun2015deep", "lecun2015deep-2"]

from django.db import migrations


def create_sequencer(apps, schema_editor):
    apps.get_model("federation", "FeedSequencer").objects.get_or_create(pk=1)


def feed_existing_records(apps, schema_editor):
    """Records published before the node could federate enter the feed like any change."""
    from django.utils import timezone

    FeedEntry = apps.get_model("federation", "FeedEntry")
    now = timezone.now()
    sources = {
        "institution": ("accounts", "Institution", {}),
        "dataset": ("catalog", "Dataset", {"visibility": "public"}),
        "benchmark": (
            "catalog",
            "Benchmark",
            {"visibility": "public", "dataset__visibility": "public"},
        ),
        "paper": ("catalog", "Paper", {"visibility": "public"}),
        "model": ("catalog", "ResearchModel", {"visibility": "public"}),
        "result": (
            "evaluations",
            "Result",
            {
                "model_version__published_at__isnull": False,
                "model_version__model__visibility": "public",
                "benchmark__visibility": "public",
                "benchmark__dataset__visibility": "public",
            },
        ),
    }
    for record_type, (app_label, model_name, public) in sources.items():
        model = apps.get_model(app_label, model_name)
        ids = model.objects.filter(origin_node="", **public).values_list("pk", flat=True)
        FeedEntry.objects.bulk_create(
            [
                FeedEntry(record_type=record_type, record_id=pk, ever_public=True, changed_at=now)
                for pk in ids.iterator()
            ],
            batch_size=1000,
            ignore_conflicts=True,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0001_initial"),
        ("accounts", "0002_institution_origin"),
        ("catalog", "0007_mirror_origin"),
        ("evaluations", "0003_result_origin"),
    ]

    operations = [
        migrations.RunPython(create_sequencer, migrations.RunPython.noop),
        migrations.RunPython(feed_existing_records, migrations.RunPython.noop),
    ]

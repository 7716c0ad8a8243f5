"""Evaluation results: the metrics of a job's successful attempt and how they were obtained."""

from django.db import models

from apps.accounts.models import Institution
from apps.catalog.models import Benchmark, ModelVersion
from apps.compute.models import ComputeNode, Job
from apps.core.models import MirrorOrigin


class AttestationStatus(models.TextChoices):
    SIGNED = "signed", "Signed by this node"
    VERIFIED = "verified", "Verified: signed by the node that ran it"
    UNVERIFIABLE = "unverifiable", "Unverifiable: no attestation or no key to check it"


class Result(MirrorOrigin):
    """The metrics of the attempt that succeeded. One per job: a repeated or late post never
    adds a second. Model version, benchmark, institution and node are copied from the job so
    leaderboards read one table. A result mirrored from a peer node has no job here."""

    job = models.OneToOneField(
        Job, null=True, blank=True, on_delete=models.CASCADE, related_name="result"
    )
    attempt = models.PositiveSmallIntegerField()
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="results"
    )
    benchmark = models.ForeignKey(Benchmark, on_delete=models.PROTECT, related_name="results")
    # The institution whose allocation paid for the evaluation.
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="results")
    node = models.ForeignKey(
        ComputeNode, null=True, blank=True, on_delete=models.SET_NULL, related_name="results"
    )
    metrics = models.JSONField()
    # The signed attestation (a DSSE envelope around an in-toto Statement) by the node that ran
    # the evaluation: made here for our own results, kept as received for a peer's.
    attestation = models.JSONField(null=True, blank=True)
    attestation_status = models.CharField(
        max_length=16, choices=AttestationStatus.choices, blank=True
    )
    # A result that re-ran another result's evaluation (same model version and benchmark),
    # usually on another node's pool.
    reproduction_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reproductions"
    )
    # Whose GPUs ran it when that was another node: its id and the institution's name there
    # (for our own results, `node` says it).
    ran_on_node = models.CharField(max_length=255, blank=True)
    ran_by_institution = models.CharField(max_length=200, blank=True)
    # What the worker reported: digests, evaluator and package versions, devices, seed, times.
    provenance = models.JSONField(default=dict, blank=True)
    # How the worker isolated the evaluation (full, partial, none), from its provenance.
    isolation = models.CharField(max_length=16, blank=True)
    gpu_seconds = models.FloatField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~models.Q(origin_node=""),
                name="unique_result_origin",
            )
        ]
        indexes = [
            models.Index(fields=["benchmark", "created_at"]),
            models.Index(fields=["model_version", "benchmark"]),
        ]

    def __str__(self) -> str:
        return f"result of job {self.job_id} (attempt {self.attempt})"

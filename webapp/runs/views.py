"""Runs pages: a run's page (``/runs/<id>/``: stages with live progress, training curves, the
held-out evaluation, cancel, the published layer in the viewer) and the context of the
"Retrain" panel on a painted campaign's page (its managers start runs there).

Each page is a server-rendered frame plus a script that reads and writes through the runs API
(``frontend/src/pages/run.ts`` with ``frontend/src/runs/``; the panel is mounted by
``frontend/src/pages/annotation_campaign.ts``). A run is seen by whoever may see its dataset
(404 for anyone else, as the API).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from pipeline.errors import InvalidInputError
from webapp.annotation.label_exports import painted_ground_truth
from webapp.annotation.models import AnnotationCampaign
from webapp.core.errors import InvalidRequest
from webapp.core.jobs.models import JobStatus
from webapp.core.page_panels import Panel
from webapp.datasets.models import Dataset
from webapp.runs import selectors
from webapp.runs.comparison import version_rows
from webapp.runs.models import STAGES, ModelVersion, PipelineRun
from webapp.runs.services import held_out_count, trained_on
from webapp.runs.verdicts import source_text, verdict_source, verdicts_text

NO_RUN = "No such run, or you may not see it."
#: How often the run page asks for the run while it is active.
POLL_MS = 1000


def run_url(run_id: int) -> str:
    return reverse("runs:run", args=[run_id])


@require_safe
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    """One run, live while it is active (whoever may see its dataset)."""
    run = selectors.runs_for(request.user).filter(pk=run_id).first()
    if run is None:
        raise Http404(NO_RUN)
    dataset = run.dataset
    campaign_url = ""
    if run.campaign_id is not None:
        # The campaign's page is its members' (404 for others): link it only for them.
        visible = AnnotationCampaign.objects.restrict(request.user, "view")
        if visible.filter(pk=run.campaign_id).exists():
            campaign_url = reverse("annotation:campaign", args=[run.campaign_id])
    can_cancel = bool(
        request.user.is_authenticated and PipelineRun.objects.allows(request.user, "change", run)
    )
    config = {
        "runId": run.pk,
        "runUrl": f"/api/v1/runs/{run.pk}/",
        "dataset": dataset.slug,
        "viewerUrl": reverse("viewer:dataset-viewer", args=[dataset.slug]),
        "canCancel": can_cancel,
        "canManage": bool(
            request.user.is_authenticated
            and Dataset.objects.allows(request.user, "change", dataset)
        ),
        "pollMs": POLL_MS,
        "stages": list(STAGES),
    }
    context = {
        "run": run,
        "params": ", ".join(f"{k} = {_number(v)}" for k, v in sorted(run.params.items())),
        "verdicts": verdicts_text((run.ground_truth or {}).get("verdicts")),
        "dataset": dataset,
        "campaign": run.campaign,
        "campaign_url": campaign_url,
        "viewer_url": config["viewerUrl"],
        "can_cancel": can_cancel,
        "stages": STAGES,
        "config": config,
        "csrf": get_token(request),
    }
    return render(request, "runs/run.html", context)


def _number(value: object) -> str:
    """3.0 -> "3", 0.0001 -> "0.0001" (overrides are stored as floats)."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def retrain_panel(campaign: AnnotationCampaign) -> dict[str, Any]:
    """What the campaign page's "Retrain" panel shows before a start: the approved painted
    ground truth a run would snapshot now (boxes, of which held out), as ``run_start`` counts
    them, or why there is none."""
    error = ""
    truths: list[Any] = []
    try:
        truths = painted_ground_truth(campaign)
    except (InvalidRequest, InvalidInputError) as exc:
        error = str(exc)
    boxes = len(truths)
    held = held_out_count(boxes)
    versions = ModelVersion.objects.filter(dataset_id=campaign.dataset_id).order_by("-number")
    return {
        # The filter a run would apply: fitted on proofreaders' verdicts (at the start), or none.
        "verdicts": source_text(verdict_source(campaign.dataset)),
        "campaignId": campaign.pk,
        "dataset": campaign.dataset.slug,
        "boxes": boxes,
        "heldOut": held,
        "training": boxes - held,
        "error": error,
        "sameAsRun": _same_ground_truth_run(campaign, truths),
        "runsUrl": "/runs/",
        # What a run may fine-tune: the dataset's versions, newest first.
        "models": [{"id": v.pk, "number": v.number, "current": v.current} for v in versions[:50]],
    }


def _same_ground_truth_run(campaign: AnnotationCampaign, truths: list[Any]) -> int | None:
    """The latest succeeded run of ``campaign`` when it trained on exactly this ground truth
    (``services.trained_on``), else None: a run from scratch with the same preset would train
    that model again (training is seeded)."""
    if not truths:
        return None
    run = (
        PipelineRun.objects.filter(campaign=campaign, status=JobStatus.SUCCEEDED)
        .order_by("-created", "-id")
        .first()
    )
    return run.pk if run is not None and trained_on(run, truths) else None


NO_DATASET = "No such dataset, or you may not see it."


@require_safe
def models_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The dataset's model versions side by side (whoever may see the dataset; 404 otherwise):
    a row per version, and plots of the chosen versions' held-out scores per box drawn by
    ``frontend/src/pages/models.ts`` from the rows in the page."""
    dataset = Dataset.objects.restrict(request.user, "view").filter(slug=slug).first()
    if dataset is None:
        raise Http404(NO_DATASET)
    viewer_url = reverse("viewer:dataset-viewer", args=[dataset.slug])
    versions = selectors.models_for(request.user).filter(dataset=dataset)
    rows = version_rows(versions, viewer_url)
    now = selectors.kept_now(versions)
    for row in rows:
        row["keptNow"] = now.get(row["id"])
    owner = bool(
        request.user.is_authenticated and Dataset.objects.allows(request.user, "change", dataset)
    )
    # An owner may segment the dataset with any model they may see (another dataset's too).
    others = (
        [
            {
                "id": v.pk,
                "label": f"{v.dataset.name} · v{v.number}" + (" (current)" if v.current else ""),
            }
            for v in selectors.models_for(request.user).order_by("dataset__name", "-number")[:200]
        ]
        if owner
        else []
    )
    config = {
        "dataset": dataset.slug,
        "viewerUrl": viewer_url,
        "versions": rows,
        "canManage": owner,
    }
    context = {
        "dataset": dataset,
        "rows": rows,
        "viewer_url": viewer_url,
        "config": config,
        "can_manage": owner,
        "models": others,
        "trainable": trainable_campaigns(request.user, dataset),
        "csrf": get_token(request),
    }
    return render(request, "runs/models.html", context)


def _trainable(user: Any, dataset: Dataset) -> QuerySet[AnnotationCampaign]:
    """The dataset's painted campaigns the user manages (or all, for its owner), newest first."""
    if not user.is_authenticated:
        return AnnotationCampaign.objects.none()
    campaigns = AnnotationCampaign.objects.restrict(user, "change")
    return campaigns.filter(dataset=dataset, painted=True).order_by("-created", "-id")


def _trainable_row(campaign: AnnotationCampaign) -> dict[str, Any]:
    """A campaign with how many approved painted boxes a run would take (reads their labels)."""
    try:
        boxes = len(painted_ground_truth(campaign))
    except (InvalidRequest, InvalidInputError):
        boxes = 0
    url = reverse("annotation:campaign", args=[campaign.pk]) + "#retrain"
    return {"name": campaign.name, "boxes": boxes, "url": url}


def trainable_campaigns(user: Any, dataset: Dataset) -> list[dict[str, Any]]:
    """Where a new model is trained from (Retrain): :func:`_trainable`'s campaigns, counted."""
    return [_trainable_row(campaign) for campaign in _trainable(user, dataset)[:20]]


def viewer_retrain(dataset: Dataset, user: Any, **_: Any) -> Panel | None:
    """The dataset viewer's "Retrain" (``core.page_panels`` slot ``viewer.toolbar``), for whoever
    manages one of its painted campaigns: straight to that campaign's Retrain panel (the preset
    and the ground truth a run takes are shown there before it starts), or, with several, to the
    models page that lists them. Only a lone campaign's boxes are counted: the viewer opens often
    and counting reads every approved box's labels."""
    campaigns = list(_trainable(user, dataset)[:2])
    if not campaigns:
        return None
    if len(campaigns) == 1:
        return Panel("runs/viewer_retrain.html", {"only": _trainable_row(campaigns[0])})
    url = reverse("runs:models", args=[dataset.slug]) + "#train-title"
    return Panel(
        "runs/viewer_retrain.html", {"url": url, "several": _trainable(user, dataset).count()}
    )


def campaign_panel(campaign: AnnotationCampaign, manager: bool, **_: Any) -> Panel | None:
    """The campaign page's slot (``core.page_panels``): the Retrain panel, for the managers of
    a painted campaign."""
    if not (manager and campaign.painted):
        return None
    return Panel("runs/retrain_panel.html", retrain_panel(campaign), stylesheet="runs.css")

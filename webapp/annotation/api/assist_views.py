"""Model-assisted objects: object from a click (answered at once) and "propose all in box" (a
background job whose progress and proposals the page polls). Who may do what: the annotator
of an editable task of a painted campaign asks; whoever may read the assignment (reviewers,
managers) may read the latest job; anyone else gets 404."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.annotation import assist, selectors
from webapp.annotation.api import assist_serializers as a
from webapp.annotation.api.views import STALE, _AssignmentView
from webapp.core.api_schema import ErrorSerializer
from webapp.core.errors import NotFound
from webapp.core.users import signed_in_user

NOT_PAINTED = OpenApiResponse(
    ErrorSerializer, description="Bad voxel, or the campaign does not paint objects."
)
NOT_ANNOTATOR = OpenApiResponse(ErrorSerializer, description="Not the task's annotator.")


class AssistClickView(_AssignmentView):
    """The object holding a box-local voxel, grown from it by a seeded watershed: a Proposal,
    or null with the reason."""

    serializer_class = a.ClickResultSerializer

    @extend_schema(
        request=a.ClickInputSerializer,
        responses={200: a.ClickResultSerializer, 400: NOT_PAINTED, 403: NOT_ANNOTATOR, 409: STALE},
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        form = a.ClickInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        proposal, reason = assist.assist_click(
            row, signed_in_user(request), (data["z"], data["y"], data["x"])
        )
        return Response({"proposal": proposal, "reason": reason})


class AssistProposalsView(_AssignmentView):
    """POST: propose every object of the box in a background job (the one already queued or
    running is answered instead of a second); GET: the latest job, its progress and, once done,
    its proposals (404 before any)."""

    serializer_class = a.AssistJobSerializer

    @extend_schema(
        request=None,
        responses={202: a.AssistJobSerializer, 400: NOT_PAINTED, 403: NOT_ANNOTATOR, 409: STALE},
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        job = assist.proposals_start(self.assignment(), signed_in_user(request))
        return Response(assist.job_body(job), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={
            200: a.AssistJobSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No proposals asked for yet."),
        }
    )
    def get(self, request: Request, assignment_id: int) -> Response:
        job = selectors.assist_job_latest(self.assignment())
        if job is None:
            raise NotFound("No proposals were asked for in this task yet.")
        return Response(assist.job_body(job))

"""Checks of an import's request shared by the API, the command line and the services.

The rules themselves (units, label names) live in ``pipeline`` so the CLI and the site agree;
here they become ``InvalidRequest`` / ``ImportRejected`` with a message for the person importing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User

from pipeline import naming, units
from pipeline.errors import InvalidInputError, PipelineError
from pipeline.importers import SourceInfo, inspect_source
from pipeline.ome_zarr_io import open_multiscale
from webapp.datasets.models import Visibility
from webapp.datasets.services_errors import ImportRejected, InvalidRequest, NotAllowed


def voxel_size_parse(values: Sequence[Any] | None) -> list[float] | None:
    """Two or three positive finite numbers (z, y, x), or None to take the source's."""
    if values is None:
        return None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidRequest("Voxel size must be numbers, e.g. 200,200,200 (z, y, x).")
    if len(numbers) not in (2, 3):
        raise InvalidRequest(
            f"Voxel size needs three numbers (z, y, x), got {len(numbers)}: {values!r}."
        )
    if not all(math.isfinite(n) and n > 0 for n in numbers):
        raise InvalidRequest("Voxel size values must be positive, finite numbers.")
    return numbers


def unit_parse(unit: str | None) -> str | None:
    """An OME-NGFF spatial unit name ("nanometer", "micrometer", ...; "nm", "µm" accepted)."""
    if unit is None or not str(unit).strip():
        return None
    try:
        return units.normalise_unit(str(unit))
    except InvalidInputError:
        raise InvalidRequest(
            f"Unknown unit {unit!r}: use an OME-NGFF spatial unit such as nanometer or micrometer."
        ) from None


def label_name_check(name: str) -> str:
    """A label image name usable as a directory and layer name (``pipeline.naming``'s rule)."""
    try:
        return naming.label_name_check(name)
    except InvalidInputError as exc:
        raise InvalidRequest(str(exc)) from None


def visibility_check(visibility: str) -> str:
    if visibility not in Visibility.values:
        raise InvalidRequest(
            f"Unknown visibility {visibility!r}: use one of {', '.join(Visibility.values)}."
        )
    return visibility


def team_check(owner: User, visibility: str, team_id: int | None) -> None:
    """A team dataset needs a team, and the owner must belong to it (or be a superuser)."""
    if visibility == Visibility.TEAM and team_id is None:
        raise ImportRejected("Choose a team for a dataset with visibility 'team'.")
    if team_id is None:
        return
    from webapp.accounts.models import Team

    team = Team.objects.filter(id=team_id).first()
    if team is None:
        raise ImportRejected("That team does not exist.")
    if not (owner.is_superuser or team.members.filter(id=owner.id).exists()):
        raise NotAllowed("You can only share a dataset with a team you belong to.")


def spatial_shape(shape: Sequence[int], axes: Sequence[str]) -> tuple[int, ...]:
    if axes and len(axes) == len(shape):
        return tuple(int(s) for s, a in zip(shape, axes, strict=True) if a in ("z", "y", "x"))
    return tuple(int(s) for s in shape)


def volume_voxels_check(shape: Sequence[int], what: str = "The volume") -> None:
    """Refuse volumes above ``MAX_VOLUME_VOXELS`` before any work."""
    voxels = math.prod(int(s) for s in shape)
    limit = settings.MAX_VOLUME_VOXELS
    if voxels > limit:
        raise ImportRejected(
            f"{what} has {voxels:,} voxels (shape {tuple(shape)}), above this site's limit of "
            f"{limit:,} (ANNOTOME_MAX_VOLUME_VOXELS)."
        )


def source_inspect(path: Path, what: str) -> SourceInfo:
    """What ``path`` holds (cheap: headers only), or ImportRejected saying why it cannot."""
    try:
        return inspect_source(path)
    except PipelineError as exc:
        raise ImportRejected(f"{what}: {exc}")


def origin_check(store: Path) -> None:
    """An OME-Zarr registered in place must start at the origin (its first level untranslated).

    Every page places the image's voxel (0, 0, 0) at the viewer's origin and keeps positions in
    voxels of the image, while Neuroglancer draws a translated store (and its meshes and points,
    measured in physical space) where its translation puts it: the pages would look beside it.
    A copy is written at the origin, so importing one is the way round.
    """
    try:
        image = open_multiscale(store)
    except PipelineError as exc:
        raise ImportRejected(f"Cannot register the store: {exc}")
    shift = [image.translations[0][i] for i in image.spatial_indices]
    if any(v != 0 for v in shift):
        where = ", ".join(
            f"{v:g} {image.units[i] or 'units'}"
            for v, i in zip(shift, image.spatial_indices, strict=True)
        )
        names = " ".join(image.axes[i] for i in image.spatial_indices)
        raise ImportRejected(
            f"This OME-Zarr's full-resolution level is translated by {where} ({names}). "
            "Annotome places an image at the origin, so a store registered in place must not be "
            "translated: import a copy instead (the copy starts at the origin), or register a "
            "store whose first level has no translation."
        )

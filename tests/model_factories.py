"""factory_boy factories for the models every app's tests need: users, teams, datasets, layers.

Each app's test data module sets its own defaults on top (a public dataset, a segmentation
layer) by subclassing these.
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from webapp.accounts.models import Team
from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility

SHAPE = (16, 24, 32)  # z, y, x: tiny, so imports and meshing take well under a second


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass-123-word")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"Dataset {n}")
    slug = factory.Sequence(lambda n: f"dataset-{n}")
    owner = factory.SubFactory(UserFactory)
    visibility = Visibility.PRIVATE


class LayerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Layer

    dataset = factory.SubFactory(DatasetFactory)
    name = "image"
    kind = LayerKind.IMAGE
    path = "image.ome.zarr"
    ngff_version = "0.5"
    shape = factory.LazyFunction(lambda: list(SHAPE))
    axes = factory.LazyFunction(lambda: ["z", "y", "x"])
    dtype = "uint16"
    voxel_size = factory.LazyFunction(lambda: [400.0, 200.0, 200.0])
    unit = "nanometer"
    levels = 1

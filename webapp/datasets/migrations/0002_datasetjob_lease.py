"""DatasetJob on the core job base: attempts, heartbeat and the worker holding the lease."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import F


def started_jobs_had_one_attempt(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Rows from before attempts were counted: a started job ran once, its last sign of life
    was its last update."""
    DatasetJob = apps.get_model("datasets", "DatasetJob")
    DatasetJob.objects.filter(started__isnull=False).update(attempts=1, heartbeat=F("updated"))


class Migration(migrations.Migration):
    dependencies = [("datasets", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="datasetjob",
            name="attempts",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="datasetjob",
            name="heartbeat",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="datasetjob",
            name="worker",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.RunPython(started_jobs_had_one_attempt, migrations.RunPython.noop),
    ]

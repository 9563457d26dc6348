"""Campaigns can be archived; the Marketing group may view product images (to choose products to pin)."""

from django.db import migrations, models

from lookalike.conf import model_label as catalog_label

IMAGE_MODEL = catalog_label("IMAGE_MODEL")
GROUP_NAME = "Marketing"


def _view_image_permission(apps):
    from django.contrib.auth.management import create_permissions

    app_label, model_name = IMAGE_MODEL.lower().split(".")
    app_config = apps.get_app_config(app_label)
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.get(content_type__app_label=app_label, codename=f"view_{model_name}")


def add_image_view(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP_NAME).first()
    if group is not None:
        group.permissions.add(_view_image_permission(apps))


def remove_image_view(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP_NAME).first()
    if group is not None:
        group.permissions.remove(_view_image_permission(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_campaign_match_creative_descriptor"),
        migrations.swappable_dependency(IMAGE_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="campaign",
            name="status",
            field=models.CharField(
                choices=[("draft", "Draft"), ("live", "Live"), ("ended", "Ended"), ("archived", "Archived")],
                db_index=True,
                default="draft",
                max_length=8,
            ),
        ),
        migrations.RunPython(add_image_view, remove_image_view),
    ]

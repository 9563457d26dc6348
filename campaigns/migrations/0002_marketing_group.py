"""The "Marketing" group: creates and edits campaigns and creatives, reads reports.

It may look at products, stores and categories (to pick them in campaign forms) but not change them,
and has no access to catalog imports or users.
"""

from django.db import migrations

from lookalike.conf import model_label as catalog_label

PRODUCT_MODEL = catalog_label("PRODUCT_MODEL")
STORE_MODEL = catalog_label("STORE_MODEL")
CATEGORY_MODEL = catalog_label("CATEGORY_MODEL")

GROUP_NAME = "Marketing"


def _permissions(model_label: str, actions: list[str]) -> list[tuple[str, str]]:
    app_label, model_name = model_label.lower().split(".")
    return [(app_label, f"{action}_{model_name}") for action in actions]


def marketing_permissions() -> list[tuple[str, str]]:
    return [
        ("campaigns", "add_campaign"),
        ("campaigns", "change_campaign"),
        ("campaigns", "view_campaign"),
        ("campaigns", "view_report"),
        *_permissions("campaigns.creative", ["add", "change", "delete", "view"]),
        # Inline rows of the campaign form: removing a pin is a delete of its row.
        *_permissions("campaigns.pinnedproduct", ["add", "change", "delete", "view"]),
        *_permissions("campaigns.controlproduct", ["add", "change", "delete", "view"]),
        *_permissions(PRODUCT_MODEL, ["view"]),
        *_permissions(STORE_MODEL, ["view"]),
        *_permissions(CATEGORY_MODEL, ["view"]),
    ]


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations ran; this migration needs them now.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP_NAME)
    wanted = marketing_permissions()
    permissions = [
        permission
        for permission in Permission.objects.select_related("content_type")
        if (permission.content_type.app_label, permission.codename) in wanted
    ]
    missing = set(wanted) - {(p.content_type.app_label, p.codename) for p in permissions}
    if missing:
        raise RuntimeError(f"permissions not found for the Marketing group: {sorted(missing)}")
    group.permissions.add(*permissions)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]

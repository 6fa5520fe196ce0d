"""templates: region / product category scope and named variants of template overrides;
``deliveries.template`` holds the variant the rule chose.

An override's key becomes (tenant, channel, milestone, part, locale, region, product
category, variant); NULL region/category mean ANY and NULL variant the default template,
compared through ``coalesce`` in the unique indexes (as ``notification_rules`` does).
Existing overrides keep applying everywhere: they become ANY/ANY, default variant.

Downgrade deletes the scoped and variant overrides (the old key cannot hold them).

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEY = ["tenant_id", "channel", "milestone", "part", "locale"]
_SCOPE = [sa.text("coalesce(region, '')"), sa.text("coalesce(product_category, '')"),
          sa.text("coalesce(variant, '')")]


def upgrade() -> None:
    op.add_column("template_overrides", sa.Column("region", sa.String(32), nullable=True))
    op.add_column("template_overrides",
                  sa.Column("product_category", sa.String(64), nullable=True))
    op.add_column("template_overrides", sa.Column("variant", sa.String(64), nullable=True))
    op.create_check_constraint("ck_template_overrides_variant", "template_overrides",
                               "variant IS NULL OR variant <> 'default'")
    op.drop_constraint("uq_template_overrides_version", "template_overrides", type_="unique")
    op.drop_index("uq_template_overrides_active", table_name="template_overrides")
    op.create_index("uq_template_overrides_version", "template_overrides",
                    [*_KEY, *_SCOPE, "version"], unique=True)
    op.create_index("uq_template_overrides_active", "template_overrides", [*_KEY, *_SCOPE],
                    unique=True, postgresql_where=sa.text("active"))
    op.add_column("deliveries", sa.Column("template", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("deliveries", "template")
    op.execute("DELETE FROM template_overrides WHERE region IS NOT NULL "
               "OR product_category IS NOT NULL OR variant IS NOT NULL")
    op.drop_index("uq_template_overrides_active", table_name="template_overrides")
    op.drop_index("uq_template_overrides_version", table_name="template_overrides")
    op.create_index("uq_template_overrides_active", "template_overrides", _KEY, unique=True,
                    postgresql_where=sa.text("active"))
    op.create_unique_constraint("uq_template_overrides_version", "template_overrides",
                                [*_KEY, "version"])
    op.drop_constraint("ck_template_overrides_variant", "template_overrides", type_="check")
    op.drop_column("template_overrides", "variant")
    op.drop_column("template_overrides", "product_category")
    op.drop_column("template_overrides", "region")

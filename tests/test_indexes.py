"""The Sprint 8 indexes (plan D3, migration 0003) are in the catalog as designed; every foreign key of
core has an index to serve it; no index duplicates another. Catalog only: no data, runs in a blink.
`make explain` is what proves, at 200,000 orders, that the planner uses them (docs/indexes.md)."""

from __future__ import annotations

import psycopg
import pytest

# index -> its exact definition. shipping_assignments_delivered_at_idx deliberately differs from the
# plan's (status, delivered_at): see docs/indexes.md, "Where this differs from the plan".
PLAN_INDEXES = {
    "ledger_entries_wallet_id_amount_created_at_idx": (
        "CREATE INDEX ledger_entries_wallet_id_amount_created_at_idx ON core.ledger_entries "
        "USING btree (wallet_id, amount, created_at)"
    ),
    "ledger_entries_created_at_idx": (
        "CREATE INDEX ledger_entries_created_at_idx ON core.ledger_entries USING btree (created_at DESC)"
    ),
    "shipping_assignments_agent_id_status_created_at_idx": (
        "CREATE INDEX shipping_assignments_agent_id_status_created_at_idx ON core.shipping_assignments "
        "USING btree (agent_id, status, created_at)"
    ),
    "shipping_assignments_delivered_at_idx": (
        "CREATE INDEX shipping_assignments_delivered_at_idx ON core.shipping_assignments "
        "USING btree (delivered_at) WHERE (status = 'DELIVERED'::text)"
    ),
    "delivery_agents_serviceable_zip_codes_idx": (
        "CREATE INDEX delivery_agents_serviceable_zip_codes_idx ON core.delivery_agents "
        "USING gin (serviceable_zip_codes)"
    ),
    "wallets_seller_id_idx": "CREATE INDEX wallets_seller_id_idx ON core.wallets USING btree (seller_id)",
}


@pytest.mark.parametrize("name", sorted(PLAN_INDEXES))
def test_plan_index_exists_as_designed_and_is_commented(conn: psycopg.Connection, name: str) -> None:
    row = conn.execute(
        """select pg_get_indexdef(i.indexrelid), i.indisvalid, obj_description(i.indexrelid, 'pg_class')
             from pg_index i where i.indexrelid = to_regclass('core.' || %s)""",
        [name],
    ).fetchone()
    assert row is not None, f"index core.{name} is missing"
    definition, valid, comment = row
    assert definition == PLAN_INDEXES[name]
    assert valid, f"index core.{name} is not valid"
    assert comment and comment.startswith("Serves "), (
        f"core.{name} needs a COMMENT saying which query it serves, got {comment!r}"
    )


def test_every_core_foreign_key_has_an_index_leading_with_its_columns(conn: psycopg.Connection) -> None:
    # An index serves the FK when its leading key columns are the FK's columns and it covers every
    # row the FK check can look for: not partial, or partial on "<column> IS NOT NULL" only.
    missing = conn.execute(
        """
        select format('%s.%s (%s)', c.conrelid::regclass, c.conname,
                      (select string_agg(a.attname, ', ' order by k.n)
                         from unnest(c.conkey) with ordinality k (attnum, n)
                         join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum))
          from pg_constraint c
         where c.contype = 'f' and c.connamespace = 'core'::regnamespace
           and not exists (
               select 1 from pg_index i
                where i.indrelid = c.conrelid and i.indisvalid
                  and (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] = c.conkey
                  and (i.indpred is null
                       or (cardinality(c.conkey) = 1
                           and pg_get_expr(i.indpred, i.indrelid) = format('(%I IS NOT NULL)',
                               (select a.attname from pg_attribute a
                                 where a.attrelid = c.conrelid and a.attnum = c.conkey[1])))))
         order by 1
        """
    ).fetchall()
    assert not missing, f"foreign keys without an index: {[m[0] for m in missing]}"


def test_no_core_index_duplicates_or_is_a_prefix_of_another(conn: psycopg.Connection) -> None:
    # Redundant: a plain (non-unique, non-partial) index whose key columns are a leading prefix of
    # another full index of the same table and access method — the longer one serves its queries.
    redundant = conn.execute(
        """
        select format('%s is covered by %s', a.indexrelid::regclass, b.indexrelid::regclass)
          from pg_index a
          join pg_class ca on ca.oid = a.indexrelid
          join pg_index b on b.indrelid = a.indrelid and b.indexrelid <> a.indexrelid
          join pg_class cb on cb.oid = b.indexrelid
         where ca.relnamespace = 'core'::regnamespace
           and not a.indisunique and a.indpred is null and b.indpred is null
           and ca.relam = cb.relam
           and a.indexprs is null and b.indexprs is null
           and a.indnkeyatts <= b.indnkeyatts
           and (string_to_array(b.indkey::text, ' ')::int2[])[1:a.indnkeyatts]
               = (string_to_array(a.indkey::text, ' ')::int2[])[1:a.indnkeyatts]
           and (string_to_array(b.indoption::text, ' ')::int2[])[1:a.indnkeyatts]
               = (string_to_array(a.indoption::text, ' ')::int2[])[1:a.indnkeyatts]
         order by 1
        """
    ).fetchall()
    assert not redundant, [r[0] for r in redundant]


def test_core_index_names_follow_the_convention(conn: psycopg.Connection) -> None:
    # <table>_<cols>_{pkey,key,idx} (CONVENTIONS.md): the name starts with its table and ends with the kind.
    wrong = conn.execute(
        """
        select ci.relname
          from pg_index i
          join pg_class ci on ci.oid = i.indexrelid
          join pg_class ct on ct.oid = i.indrelid
         where ci.relnamespace = 'core'::regnamespace
           and not (ci.relname like ct.relname || '\\_%' and ci.relname ~ '_(pkey|key|idx)$')
         order by 1
        """
    ).fetchall()
    assert not wrong, [w[0] for w in wrong]

"""Fixtures: one real cluster per session, a migrated template, a fresh database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest

from waybill import testing
from waybill.cluster import Cluster

_counter = itertools.count()


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with testing.test_cluster() as c:
        testing.build_template(c)
        yield c


@pytest.fixture
def db_url(cluster: Cluster) -> Iterator[str]:
    """A fresh database cloned from the migrated template; dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    cluster.create_database(name, template=testing.TEMPLATE_DB)
    yield cluster.url(name)
    cluster.drop_database(name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def small_seeded(db_url: str) -> str:
    """db_url seeded small (600 orders, 40 agents, 6 zip codes): the seed ends with the rollups'
    rebuild and the views' refresh, so every metrics endpoint has data to answer from."""
    from waybill import seed

    seed.seed(db_url, orders=600, agents=40, zips=6)
    return db_url

"""The endpoints inference follows: a re-list replaces them as a whole, and the versions
they route to are known at once."""

from __future__ import annotations

from modelhub.inference.endpoints import EndpointRoutes, RoutesTable


def _routes(*names: str, versions: tuple[tuple[str, int], ...] = ()) -> EndpointRoutes:
    return EndpointRoutes(frozenset(names), frozenset(versions))


def test_put_delete_and_relist() -> None:
    table = RoutesTable()
    table.put("endpoints/a", _routes("champion", versions=(("fraud", 1),)))
    table.put("endpoints/b", _routes("x", versions=(("other", 4),)))
    assert table.knows("endpoints/a", "champion") and not table.knows("endpoints/b", "champion")
    assert table.routes_to(("fraud", 1)) and table.routes_to(("other", 4))
    table.delete("endpoints/b")
    assert not table.routes_to(("other", 4)) and not table.knows("endpoints/b", "x")
    # During a re-list the old values stay in force; the snapshot then replaces them.
    table.begin_snapshot()
    table.put("endpoints/c", _routes("next", versions=(("fraud", 2),)))
    assert table.routes_to(("fraud", 1)) and not table.routes_to(("fraud", 2))
    table.end_snapshot()
    assert table.routes_to(("fraud", 2)) and not table.routes_to(("fraud", 1))
    assert not table.knows("endpoints/a", "champion") and len(table) == 1

"""The path predicates every planned path passes at plan time and again before acting."""

import posixpath

from hypothesis import given
from hypothesis import strategies as st

from mlcache_audit.safety import is_protected, is_safe_relative, may_act_on

parts = st.text(alphabet=st.characters(blacklist_characters="/\x00\\", blacklist_categories=("Cs",)), min_size=1,
                max_size=12)


@given(st.lists(parts, min_size=1, max_size=6))
def test_safe_relative_paths_never_leave_root(components):
    path = "/".join(components)
    if is_safe_relative(path):
        normalised = posixpath.normpath(posixpath.join("/root", path))
        assert normalised.startswith("/root/")
        assert ".." not in path.split("/")


@given(st.lists(parts, min_size=0, max_size=4))
def test_documents_and_preferences_are_never_actionable(rest):
    for top in ("Documents", "Library/Preferences"):
        path = "/".join([top, *rest])
        assert not may_act_on(path)


def test_parents_of_protected_folders_are_protected_too():
    assert is_protected("Library")  # removing Library would remove Library/Preferences
    assert not is_protected("Library/Caches")


def test_unsafe_shapes_are_refused():
    for bad in ("", "/etc/passwd", "../x", "tmp/../Documents", "tmp//x", "./tmp", "tmp/\x00", "a\\b"):
        assert not may_act_on(bad), bad
    assert may_act_on("tmp/X.mlmodelc")
    assert not may_act_on(".com.apple.mobile_container_manager.metadata.plist")


@given(st.text(max_size=60))
def test_archive_member_names_never_escape(raw):
    from mlcache_audit.sources.archive import clean_member_name

    name, reason = clean_member_name(raw)
    if name is not None:
        assert not name.startswith("/") and ".." not in name.split("/") and "" not in name.split("/")
        assert "\\" not in name
        assert posixpath.normpath(posixpath.join("/x", name)).startswith("/x/")
    else:
        assert reason is not None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                           max_leaves=20)


@given(st.one_of(json_values, st.fixed_dictionaries({"schema": st.just("mlcache.plan/1")}, optional={
    "path": json_values, "created": json_values, "rules": json_values, "include_persistent": json_values,
    "containers": st.lists(st.dictionaries(st.sampled_from(["root", "form", "actions", "reclaimable_bytes"]),
                                           json_values), max_size=2)})))
def test_any_json_is_a_plan_or_a_clear_refusal(doc):
    import pytest

    from mlcache_audit.errors import PlanInvalid
    from mlcache_audit.plan import Plan

    try:
        plan = Plan.from_dict(doc)
    except PlanInvalid:
        return
    assert isinstance(plan, Plan)
    with pytest.raises(PlanInvalid):
        Plan.from_dict({**plan.to_dict(), "schema": "mlcache.plan/2"})


@given(st.one_of(st.text(max_size=60), st.text(alphabet="ab./\\:_MACOSXé\0", max_size=24),
                 st.lists(st.sampled_from(["a", ".", "..", "._x", "", "__MACOSX", "c:", "x\\y", "é"]), max_size=6)
                 .map("/".join)))
def test_the_fast_member_name_check_agrees_with_the_full_cleaning(raw):
    """A name taken as it is by the fast check is exactly what the full cleaning gives."""
    from mlcache_audit.sources import archive

    assert archive.clean_member_name(raw) == archive._cleaned(raw)

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

"""Locators of another cluster's manifest: ``+A`` becomes ``+R<X>-``, ``+K@<X>`` only on
unsigned locators; block locators only, never twice, never on names."""

from __future__ import annotations

from clusterfed.routing.manifests import add_cluster_hints, hint_answer

A = "acbd18db4cc2f85cedef654fccc4a4d8+3"
B = "37b51d194a7513e45b56f6524f2d51f2+3"


def test_each_locator_without_a_cluster_hint_gets_one() -> None:
    manifest = f". {A} {B} 0:3:foo.txt 3:3:bar.txt\n"
    assert add_cluster_hints(manifest, "c97qk") == (
        f". {A}+K@c97qk {B}+K@c97qk 0:3:foo.txt 3:3:bar.txt\n"
    )


def test_a_locator_that_already_names_a_cluster_is_left_alone() -> None:
    manifest = f". {A}+K@zbbbb {B} 0:6:foo.txt\n"
    assert add_cluster_hints(manifest, "c97qk") == f". {A}+K@zbbbb {B}+K@c97qk 0:6:foo.txt\n"


SIG = "+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff"


def test_a_signature_becomes_a_remote_signature_and_gets_no_cluster_hint() -> None:
    # lib/controller/federation/conn.go rewriteManifest: every +A of a locator, in place.
    manifest = f". {A}{SIG} {B}+K@zbbbb{SIG}+Z1 0:6:foo.txt\n./s {A}{SIG} 0:3:{A}{SIG}\n"
    remote = SIG.replace("+A", "+Rc97qk-")
    assert add_cluster_hints(manifest, "c97qk") == (
        f". {A}{remote} {B}+K@zbbbb{remote}+Z1 0:6:foo.txt\n./s {A}{remote} 0:3:{A}{SIG}\n"
    )


def test_a_third_clusters_remote_signature_is_kept_as_it_is() -> None:
    # c97qk's own answer may already point at zbbbb: that block is zbbbb's, not c97qk's.
    manifest = f". {A}+Rzbbbb-feedface@65f0c3a1 {B} 0:6:foo.txt\n"
    assert add_cluster_hints(manifest, "c97qk") == (
        f". {A}+Rzbbbb-feedface@65f0c3a1 {B}+K@c97qk 0:6:foo.txt\n"
    )


def test_rewriting_twice_changes_nothing_more() -> None:
    once = add_cluster_hints(f". {A}{SIG} {B} 0:6:foo.txt\n", "c97qk")
    assert add_cluster_hints(once, "c97qk") == once


def test_stream_and_file_names_are_never_rewritten() -> None:
    # A stream named like a locator, and file names that contain one.
    manifest = f"./{A} {B} 0:3:{A}\n./sub {A} 0:3:{B}+K@x 3:0:{A}\n"
    assert add_cluster_hints(manifest, "c97qk") == (
        f"./{A} {B}+K@c97qk 0:3:{A}\n./sub {A}+K@c97qk 0:3:{B}+K@x 3:0:{A}\n"
    )


def test_hinting_twice_changes_nothing_more() -> None:
    manifest = f". {A} {B} 0:6:foo.txt\n./d {B} 0:3:x\n"
    once = add_cluster_hints(manifest, "c97qk")
    assert add_cluster_hints(once, "c97qk") == once
    assert once.count("+K@c97qk") == 3


def test_empty_and_non_manifest_text_pass_through() -> None:
    assert add_cluster_hints("", "c97qk") == ""
    assert add_cluster_hints("not a manifest at all", "c97qk") == "not a manifest at all"


def test_lists_and_single_objects_are_hinted_and_other_shapes_ignored() -> None:
    single = {"uuid": "c97qk-4zz18-aaaaaaaaaaaaaaa", "manifest_text": f". {A} 0:3:a\n"}
    listing = {"items": [dict(single), {"uuid": "c97qk-4zz18-bbbbbbbbbbbbbbb"}]}
    hint_answer(single, "c97qk")
    hint_answer(listing, "c97qk")
    hint_answer(["not", "an", "object"], "c97qk")
    assert single["manifest_text"] == f". {A}+K@c97qk 0:3:a\n"
    assert listing["items"][0]["manifest_text"] == f". {A}+K@c97qk 0:3:a\n"
    assert "manifest_text" not in listing["items"][1]

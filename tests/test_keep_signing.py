"""Keep's pure rules: locators, Arvados's blob signatures (its test vector), manifests."""

from __future__ import annotations

import hashlib

import pytest
from clusterfed.keep.locators import MalformedLocator, parse_locator, strip_hints
from clusterfed.keep.manifests import (
    iter_locators,
    portable_data_hash,
    portable_manifest,
    sign_manifest,
    strip_signatures,
    unsigned_locators,
)
from clusterfed.keep.signing import (
    SignatureExpired,
    SignatureInvalid,
    SignatureMissing,
    sign_locator,
    signing_key,
    verify_locator,
)

# Arvados's sdk/go/arvados/blob_signature_test.go
KNOWN_HASH = "acbd18db4cc2f85cedef654fccc4a4d8"
KNOWN_LOCATOR = KNOWN_HASH + "+3"
KNOWN_TOKEN = "hocfupkn2pjhrpgp2vxv8rsku7tvtx49arbc9s4bvu7p7wxqvk"
KNOWN_KEY = (
    b"13u9fkuccnboeewr0ne3mvapk28epf68a3bhj9q8sb4l6e4e5mkk"
    b"p6nhj2mmpscgu1zze5h5enydxfe3j215024u16ij4hjaiqs5u4pzsl3nczmaoxnc"
    b"ljkm4875xqn4xv058koz3vkptmzhyheiy6wzevzjmdvxhvcqsvr5abhl15c2d4o4"
    b"jhl0s91lojy1mtrzqqvprqcverls0xvy9vai9t1l1lvvazpuadafm71jl4mrwq2y"
    b"gokee3eamvjy8qq1fvy238838enjmy5wzy2md7yvsitp5vztft6j4q866efym7e6"
    b"vu5wm9fpnwjyxfldw3vbo01mgjs75rgo7qioh8z8ij7jpyp8508okhgbbex3ceei"
    b"786u5rw2a9gx743dj3fgq2irk"
)
KNOWN_SIGNATURE = "89118b78732c33104a4d6231e8b5a5fa1e4301e3"
KNOWN_EXPIRY = 0x7FFFFFFF
KNOWN_SIG_HINT = f"+A{KNOWN_SIGNATURE}@7fffffff"
TTL = 1209600


def test_the_arvados_test_vector():
    signed = sign_locator(KNOWN_LOCATOR, KNOWN_TOKEN, KNOWN_KEY, TTL, KNOWN_EXPIRY)
    assert signed == KNOWN_LOCATOR + KNOWN_SIG_HINT
    verify_locator(signed, KNOWN_TOKEN, KNOWN_KEY, TTL)


@pytest.mark.parametrize(
    "locator",
    [
        KNOWN_LOCATOR + "+K@xyzzy" + KNOWN_SIG_HINT,
        KNOWN_LOCATOR + KNOWN_SIG_HINT + "+Zfoo",
        KNOWN_HASH + "+999999" + KNOWN_SIG_HINT,
        KNOWN_HASH + KNOWN_SIG_HINT,
    ],
)
def test_other_hints_and_the_size_do_not_matter(locator):
    verify_locator(locator, KNOWN_TOKEN, KNOWN_KEY, TTL)


def test_signing_replaces_an_old_signature_and_keeps_other_hints():
    old = KNOWN_LOCATOR + "+K@xyzzy+A" + "0" * 40 + "@00000001"
    assert (
        sign_locator(old, KNOWN_TOKEN, KNOWN_KEY, TTL, KNOWN_EXPIRY)
        == KNOWN_LOCATOR + "+K@xyzzy" + KNOWN_SIG_HINT
    )


@pytest.mark.parametrize(
    ("locator", "credential", "key", "ttl", "error"),
    [
        (KNOWN_LOCATOR, KNOWN_TOKEN, KNOWN_KEY, TTL, SignatureMissing),
        (KNOWN_LOCATOR + KNOWN_SIG_HINT, KNOWN_TOKEN + "x", KNOWN_KEY, TTL, SignatureInvalid),
        (KNOWN_LOCATOR + KNOWN_SIG_HINT, KNOWN_TOKEN, KNOWN_KEY + b"x", TTL, SignatureInvalid),
        (KNOWN_LOCATOR + KNOWN_SIG_HINT, KNOWN_TOKEN, KNOWN_KEY, TTL + 1, SignatureInvalid),
        (
            KNOWN_LOCATOR + "+Aaaaaaaaaaaaaaaa@7fffffff",
            KNOWN_TOKEN,
            KNOWN_KEY,
            TTL,
            SignatureInvalid,
        ),
        (
            KNOWN_LOCATOR + KNOWN_SIG_HINT + KNOWN_SIG_HINT,
            KNOWN_TOKEN,
            KNOWN_KEY,
            TTL,
            SignatureInvalid,
        ),
        (KNOWN_LOCATOR + KNOWN_SIG_HINT, KNOWN_TOKEN, b"", TTL, SignatureInvalid),
        ("not-a-locator", KNOWN_TOKEN, KNOWN_KEY, TTL, SignatureInvalid),
    ],
)
def test_what_does_not_verify(locator, credential, key, ttl, error):
    with pytest.raises(error):
        verify_locator(locator, credential, key, ttl)


def test_expiry_is_told_apart_from_a_bad_signature():
    signed = sign_locator(KNOWN_LOCATOR, KNOWN_TOKEN, KNOWN_KEY, TTL, 1000)
    with pytest.raises(SignatureExpired):
        verify_locator(signed, KNOWN_TOKEN, KNOWN_KEY, TTL, now=1001)
    verify_locator(signed, KNOWN_TOKEN, KNOWN_KEY, TTL, now=999)
    # Expiry is checked first, as Arvados does: an expired forgery is "expired".
    with pytest.raises(SignatureExpired):
        verify_locator(
            KNOWN_LOCATOR + "+A" + "0" * 40 + "@000003e8", KNOWN_TOKEN, KNOWN_KEY, TTL, now=1001
        )
    assert not isinstance(SignatureExpired("x"), SignatureInvalid)


def test_the_credential_is_the_exact_string_presented():
    v2 = "v2/zzzzz-gj3su-000000000000000/" + KNOWN_TOKEN
    signed = sign_locator(KNOWN_LOCATOR, v2, KNOWN_KEY, TTL, KNOWN_EXPIRY)
    verify_locator(signed, v2, KNOWN_KEY, TTL)
    with pytest.raises(SignatureInvalid):
        verify_locator(signed, KNOWN_TOKEN, KNOWN_KEY, TTL)


def test_nothing_is_signed_without_a_key_or_a_credential():
    assert sign_locator(KNOWN_LOCATOR, KNOWN_TOKEN, b"", TTL, KNOWN_EXPIRY) == KNOWN_LOCATOR
    assert sign_locator(KNOWN_LOCATOR, "", KNOWN_KEY, TTL, KNOWN_EXPIRY) == KNOWN_LOCATOR


def test_the_key_defaults_to_one_derived_from_the_system_root_token():
    assert signing_key("explicit", "root") == b"explicit"
    derived = signing_key("", "root")
    assert derived == signing_key("", "root") and len(derived) == 64
    assert derived != signing_key("", "other root") and b"root" not in derived
    assert signing_key("", "") == b""


def test_locator_parsing():
    loc = parse_locator(
        KNOWN_LOCATOR + "+K@xyzzy" + KNOWN_SIG_HINT + "+Rzbbbb-" + "1" * 40 + "@7fffffff"
    )
    assert (loc.md5, loc.size, loc.base) == (KNOWN_HASH, 3, KNOWN_LOCATOR)
    assert loc.signature is not None and loc.signature.signature == KNOWN_SIGNATURE
    assert loc.signature.expiry == KNOWN_EXPIRY
    assert loc.remote_signature is not None and loc.remote_signature.cluster_id == "zbbbb"
    assert loc.remote_signature.as_local().hint == "A" + "1" * 40 + "@7fffffff"
    assert loc.cluster_hint == "xyzzy"
    assert parse_locator(KNOWN_LOCATOR + "+K@zbbbb").cluster_hint == "zbbbb"
    assert (
        str(loc)
        == KNOWN_LOCATOR + "+K@xyzzy" + KNOWN_SIG_HINT + "+Rzbbbb-" + "1" * 40 + "@7fffffff"
    )
    assert str(loc.without("A", "R")) == KNOWN_LOCATOR + "+K@xyzzy"
    assert strip_hints(KNOWN_LOCATOR + KNOWN_SIG_HINT) == KNOWN_LOCATOR
    assert parse_locator(KNOWN_HASH, require_size=False).size is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        KNOWN_HASH,  # no size
        KNOWN_HASH.upper() + "+3",
        KNOWN_HASH[:-1] + "+3",
        KNOWN_LOCATOR + "+",
        KNOWN_LOCATOR + "++K@x",
        KNOWN_LOCATOR + "+k@xyzzy",
        KNOWN_LOCATOR + "+K@x y",
        KNOWN_LOCATOR + "+K@x/y",
        "3+" + KNOWN_HASH,
    ],
)
def test_malformed_locators(text):
    with pytest.raises(MalformedLocator):
        parse_locator(text)


MANIFEST = (
    f". {KNOWN_LOCATOR}+K@zbbbb 37b51d194a7513e241ee8e6f4c7c6d2d+3 0:3:foo 3:3:bar\n"
    f"./sub {KNOWN_LOCATOR} 0:3:{KNOWN_LOCATOR}\n"
)


def test_manifest_signing_stripping_and_the_portable_hash():
    signed = sign_manifest(MANIFEST, KNOWN_TOKEN, KNOWN_KEY, TTL, KNOWN_EXPIRY)
    assert signed.count("+A") == 3
    assert f"0:3:{KNOWN_LOCATOR}\n" in signed  # a file name is never a locator
    assert f". {KNOWN_LOCATOR}+K@zbbbb{KNOWN_SIG_HINT} " in signed
    assert unsigned_locators(signed, KNOWN_TOKEN, KNOWN_KEY, TTL) == []
    assert unsigned_locators(signed, "other", KNOWN_KEY, TTL) == [
        str(loc) for loc in iter_locators(signed)
    ]
    assert strip_signatures(signed) == MANIFEST
    portable = portable_manifest(signed)
    assert "+K@" not in portable and "+A" not in portable
    assert portable_data_hash(signed) == portable_data_hash(MANIFEST)
    data = portable.encode()
    assert portable_data_hash(MANIFEST) == f"{hashlib.md5(data).hexdigest()}+{len(data)}"
    assert portable_data_hash("") == "d41d8cd98f00b204e9800998ecf8427e+0"


def test_unsigned_locators_names_each_bad_one_in_order():
    good = sign_locator(KNOWN_LOCATOR, KNOWN_TOKEN, KNOWN_KEY, TTL, KNOWN_EXPIRY)
    forged = KNOWN_HASH + "+4+A" + "0" * 40 + "@7fffffff"
    manifest = f". {good} {forged} 37b51d194a7513e241ee8e6f4c7c6d2d+3 0:10:f\n"
    assert unsigned_locators(manifest, KNOWN_TOKEN, KNOWN_KEY, TTL) == [
        forged,
        "37b51d194a7513e241ee8e6f4c7c6d2d+3",
    ]

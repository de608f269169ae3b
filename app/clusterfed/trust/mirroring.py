"""How a remote user's flags become the flags of the local mirror.

Pure functions of (what the remote says, how much we trust its issuer, the mirror we
already have), so that every store applies the same rules and tests can walk the whole
matrix without a database.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterfed.identity import RemoteUser, UserRecord


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    """How far this cluster trusts the issuer of a user."""

    login: bool  # the issuer is Login.LoginCluster
    trusted: bool  # RemoteClusters[issuer].ActivateUsers or Users.NewUsersAreActive
    autosetup: bool  # Users.AutoSetupNewUsers


@dataclass(frozen=True, slots=True)
class Flags:
    is_admin: bool
    is_invited: bool
    is_active: bool


def flags_for_new_user(remote: RemoteUser, policy: MirrorPolicy) -> Flags:
    invited, active, admin = remote.is_invited, remote.is_active, remote.is_admin
    return Flags(
        is_admin=bool(policy.login and admin and invited is not False and active),
        is_invited=bool(
            (invited or (invited is None and active))
            and (policy.login or policy.trusted or policy.autosetup)
        ),
        is_active=bool(invited is not False and (policy.login or policy.trusted) and active),
    )


def flags_for_existing_user(remote: RemoteUser, policy: MirrorPolicy, mirror: Flags) -> Flags:
    invited, active = remote.is_invited, remote.is_active
    if invited is False or (active is False and invited is None):
        is_active, is_invited = False, False
    elif active and (policy.login or policy.trusted):
        is_active, is_invited = True, True
    else:
        # Unchanged: a user a local admin pre-activated stays active while the remote
        # still says active.
        is_active, is_invited = mirror.is_active, mirror.is_invited
    # Admin follows the login cluster for an active mirror. A peer cluster can never make
    # anyone admin here (remote users are never admin unless their issuer is the
    # login cluster), and an inactive mirror is never admin.
    is_admin = bool(policy.login and is_active and remote.is_admin)
    return Flags(is_admin=is_admin, is_invited=is_invited, is_active=is_active)


def mirror_names(remote: RemoteUser) -> tuple[str | None, str | None]:
    """(first_name, last_name) for the mirror; the remote system user gets a fixed name."""
    if remote.uuid.endswith("-tpzed-000000000000000"):
        return "root", f"from cluster {remote.uuid[:5]}"
    return remote.first_name, remote.last_name


def flags_of(user: UserRecord) -> Flags:
    return Flags(is_admin=user.is_admin, is_invited=user.is_invited, is_active=user.is_active)

"""The domain table: every domain xend knows, found by ID, name or UUID; the
uniqueness of names and UUIDs; and the only writer of the store's rows.

A domain is in the table from the moment it is admitted (its name and UUID are
reserved while its machine starts) until it is forgotten.  What the store holds
of it is derived from the domain in one place (``save``), so its stored state
can never disagree with it: a managed domain's row is its config and whether it
is suspended, a running domain's record is ``Domain.record``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dom0.domain.domain import Domain, Running
from dom0.errors import InvalidDomain, VmError
from dom0.model.config import DomainConfig
from dom0.model.state import STATE_FILTER, PowerState
from dom0.store.db import Store


def managed_state(dom: Domain) -> str:
    """What a managed domain's row says of it: ``suspended`` while its checkpoint
    holds it, else ``halted`` (a running domain comes back from its runtime record,
    and is halted when that record is gone)."""
    return PowerState.SUSPENDED.value if dom.state == PowerState.SUSPENDED else \
        PowerState.HALTED.value


class DomainTable:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_uuid: dict[str, Domain] = {}
        #: domains being migrated out (``migrating-<name>``), kept apart so that a
        #: migration to localhost can bring in the same UUID (see ``depart``)
        self._leaving: dict[str, Domain] = {}

    # ---- lookup ----------------------------------------------------------------

    def __iter__(self) -> Iterator[Domain]:
        return iter([*self._by_uuid.values(), *self._leaving.values()])

    def get(self, uuid: str) -> Domain | None:
        return self._by_uuid.get(uuid) or self._leaving.get(uuid)

    def lookup(self, ident: str | int) -> Domain:
        """By domain ID, name or UUID (spec: <Domain> is a name or an ID)."""
        text = str(ident)
        if text.isdigit():
            for dom in self:
                if dom.active and dom.domid == int(text):
                    return dom
        for dom in self:
            if dom.name == text or dom.uuid == text:
                return dom
        raise InvalidDomain(text)

    def select(self, state: str | None = None, names: list[str] | None = None) -> list[Domain]:
        if names:
            return [self.lookup(n) for n in names]
        doms = sorted(self, key=lambda d: d.name)
        if state and state != "all":
            doms = [d for d in doms if STATE_FILTER[d.state] == state]
        return doms

    # ---- who may be added ------------------------------------------------------

    def check_unique(self, cfg: DomainConfig, besides: Domain | None = None,
                     migrating_in: bool = False) -> None:
        """Refuse a name or UUID another domain (than *besides*) holds.  A domain
        *migrating_in* may carry the UUID of one migrating out of this xend (a
        migration to localhost, as Xen allowed): that one is named ``migrating-<name>``
        meanwhile, so its name is free too."""
        for dom in self:
            if dom is besides or (migrating_in and dom.migrating_out and dom.uuid == cfg.uuid):
                continue
            if dom.name == cfg.name:
                if dom.active:
                    raise VmError(f"Domain '{cfg.name}' already exists with ID '{dom.domid}'")
                raise VmError(f"VM name '{cfg.name}' already exists")
            if dom.uuid == cfg.uuid:
                raise VmError(f"Domain with UUID '{cfg.uuid}' already exists as '{dom.name}'")

    def reserve(self, dom: Domain, migrating_in: bool = False) -> None:
        """Hold *dom*'s name and UUID (checked unique first): from admission on, a
        second create of the same name is refused, even while the first starts."""
        self.check_unique(dom.config, migrating_in=migrating_in)
        self._by_uuid[dom.uuid] = dom

    # ---- a domain migrating out ---------------------------------------------------

    def depart(self, dom: Domain) -> None:
        """*dom*'s guest is being sent away: it is listed as ``migrating-<name>``
        and its UUID may be taken by the same guest coming in (localhost)."""
        dom.migrating_out = True
        if self._by_uuid.get(dom.uuid) is dom:
            del self._by_uuid[dom.uuid]
        self._leaving[dom.uuid] = dom

    def settle(self, dom: Domain) -> None:
        """*dom* is no longer migrating out (it failed, or it went to another host and
        stays as a managed record): its name back, and its UUID, at once or when the
        incoming copy that holds it meanwhile is forgotten."""
        dom.migrating_out = False
        if dom.uuid not in self._by_uuid and self._leaving.get(dom.uuid) is dom:
            self._by_uuid[dom.uuid] = self._leaving.pop(dom.uuid)

    def arrived_here(self, dom: Domain) -> bool:
        """After *dom* migrated out: did it come in to this same xend?"""
        here = self._by_uuid.get(dom.uuid)
        return here is not None and here is not dom

    def leaving(self, uuid: str) -> Domain | None:
        """The domain of *uuid* being migrated out of this xend, if any."""
        dom = self._leaving.get(uuid)
        return dom if dom is not None and dom.migrating_out else None

    def add(self, dom: Domain) -> None:
        self._by_uuid[dom.uuid] = dom

    def rekey(self, dom: Domain, old_uuid: str) -> None:
        """*dom* changed its UUID (rename-restart keeps the stopped one aside)."""
        if self._by_uuid.get(old_uuid) is dom:
            del self._by_uuid[old_uuid]
        self._by_uuid[dom.uuid] = dom

    def forget(self, dom: Domain) -> None:
        """Out of the table (its rows are the caller's: see ``drop_managed``)."""
        if self._by_uuid.get(dom.uuid) is dom:
            del self._by_uuid[dom.uuid]
            back = self._leaving.get(dom.uuid)
            if back is not None and not back.migrating_out:  # its migration failed
                self.settle(back)
        elif self._leaving.get(dom.uuid) is dom:
            del self._leaving[dom.uuid]

    # ---- the store's rows: written here only -------------------------------------

    def allocate_domid(self) -> int:
        return self.store.allocate_domid()

    def save_running(self, dom: Domain) -> None:
        """Write *dom*'s runtime record (after each change of a running domain: its
        managed row does not change with its power state)."""
        if dom.running is not None:
            self.store.put_running(dom.running.instance, dom.running.domid,
                                   dom.record(dom.running))

    def save(self, dom: Domain) -> None:
        """Write all the store holds of *dom*, derived from it: its runtime record
        while it runs, and its managed row (config and state) when it is managed."""
        self.save_running(dom)
        if dom.managed:
            self.store.put_managed(dom.uuid, dom.config.name, dom.config.to_dict(),
                                   managed_state(dom))

    def drop_running(self, run: Running) -> None:
        self.store.delete_running(run.instance)

    def drop_record(self, instance: str) -> None:
        """A runtime record whose machine is gone (found at re-adoption)."""
        self.store.delete_running(instance)

    def drop_managed(self, dom: Domain) -> None:
        self.store.delete_managed(dom.uuid)

    def note_partial(self, path: str, run: Running, resume: bool) -> None:
        """A save file is about to be written at *path* (recorded first, so a save
        cut short by xend's death is found and cleaned up by the next xend)."""
        self.store.put_partial(path, run.instance, resume)

    def drop_partial(self, path: str) -> None:
        self.store.delete_partial(path)

    def partials(self) -> list[tuple[str, str, bool]]:
        return self.store.partials()

    def running_records(self) -> list[dict[str, Any]]:
        return self.store.running_records()

    def managed_rows(self) -> list[tuple[DomainConfig, PowerState]]:
        return [(DomainConfig.from_dict(config), PowerState(state))
                for config, state in self.store.managed()]

"""Attacks by a holder of one hub's credentials, against the shipped Mosquitto configuration.

Real broker (``mosquitto`` fixture) and the real ``mosquitto_pub``/``mosquitto_sub`` clients. The
outcome is judged on what is *delivered*, never on a SUBACK alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.broker_kit import Kit, Sub, make_kit, pub, wait_for
from wire import contract

pytestmark = pytest.mark.integration

READINGS_A = contract.readings_topic("hub-a")
READINGS_B = contract.readings_topic("hub-b")


@pytest.fixture
def kit(mosquitto, tmp_path: Path) -> Kit:  # type: ignore[no-untyped-def]
    k, _ = make_kit(mosquitto, tmp_path)
    return k


@pytest.fixture
def subs() -> Iterator[list[Sub]]:
    started: list[Sub] = []
    yield started
    for s in started:
        s.close()


def _ingester(
    kit: Kit, subs: list[Sub], topic: str = contract.READINGS_FILTER, user: str = "telehub-ingester"
) -> Sub:
    s = Sub(
        kit.pw_args(user),
        [topic],
        extra=("-i", user, "-c", "-x", "3600"),
    )
    subs.append(s)
    # Ready once a probe arrives (hub-b publishing its own reading is always allowed).
    assert wait_for(
        lambda: (
            pub(kit.pw_args("hub-b"), READINGS_B, "probe", extra=("-i", "hub-b")).returncode == 0
            and any(m.endswith(" probe") for m in s.messages())
        ),
        10,
    ), s.lines()
    return s


def test_hub_cannot_take_over_the_ingesters_client_id(kit: Kit, subs: list[Sub]) -> None:
    ing = _ingester(kit, subs)
    r = pub(kit.pw_args("hub-a"), READINGS_A, "takeover", extra=("-i", "telehub-ingester"))
    assert r.returncode != 0, "hub-a connected with the ingester's client id"
    assert ing.alive()
    r = pub(kit.pw_args("hub-b"), READINGS_B, "after", extra=("-i", "hub-b"))
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: f"{READINGS_B} after" in ing.messages())
    # The ingester was never kicked off: no second connection of it in the broker log.
    log = (kit.proc.directory / "mosquitto.log").read_text()  # type: ignore[attr-defined]
    assert "already connected, closing old connection" not in log


def test_hub_cannot_take_over_another_hubs_client_id(kit: Kit, subs: list[Sub]) -> None:
    receipts_b = contract.receipts_topic("hub-b")
    hub_b = Sub(kit.pw_args("hub-b"), [receipts_b], extra=("-i", "hub-b", "-c", "-x", "3600"))
    subs.append(hub_b)
    assert wait_for(lambda: hub_b.alive() and len(hub_b.lines()) == 0, 1)
    r = pub(kit.pw_args("hub-a"), READINGS_A, "as b", extra=("-i", "hub-b"))
    assert r.returncode != 0, "hub-a connected with hub-b's client id"
    r = pub(kit.pw_args("telehub-ingester"), receipts_b, "receipt", extra=("-i", "ing-x"))
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: f"{receipts_b} receipt" in hub_b.messages()), hub_b.lines()
    log = (kit.proc.directory / "mosquitto.log").read_text()  # type: ignore[attr-defined]
    assert "already connected, closing old connection" not in log


def test_hub_cannot_divert_a_shared_subscription(kit: Kit, subs: list[Sub]) -> None:
    shared = f"$share/telehub/{contract.READINGS_FILTER}"
    ing = _ingester(kit, subs, shared)
    thieves = [
        Sub(kit.pw_args("hub-a"), [shared], extra=("-i", "hub-a", "-c", "-x", "3600")),
        Sub(kit.pw_args("hub-a"), [shared], extra=("-i", "hub-a-2")),
    ]
    subs.extend(thieves)
    wait_for(lambda: False, 1.0)
    for i in range(30):
        r = pub(kit.pw_args("hub-b"), READINGS_B, f"r{i}", extra=("-i", "hub-b"))
        assert r.returncode == 0, r.stderr
    want = {f"{READINGS_B} r{i}" for i in range(30)}
    wait_for(lambda: want <= set(ing.messages()), 10)
    got = want & set(ing.messages())
    assert len(got) == 30, f"the ingester received only {len(got)} of 30 readings"
    for t in thieves:
        assert t.messages() == []


@pytest.mark.parametrize(
    "topic",
    [
        "#",
        contract.READINGS_FILTER,
        contract.receipts_topic("hub-b"),
        contract.receipts_topic("+"),
        "$SYS/#",
        "telehub/v1/hubs/hub-a/#",
    ],
)
def test_hub_reads_and_subscribes_nothing_outside_its_own_receipts(
    kit: Kit, subs: list[Sub], topic: str
) -> None:
    spy = Sub(kit.pw_args("hub-a"), [topic], extra=("-i", "hub-a"))
    subs.append(spy)
    # The SUBACK says no (0x87) and mosquitto_sub gives up ...
    assert wait_for(lambda: "denied" in " ".join(spy.lines()), 5), spy.lines()
    # ... and nothing is delivered either.
    pub(kit.pw_args("hub-b"), READINGS_B, "b's reading", extra=("-i", "hub-b"))
    pub(kit.pw_args("telehub-ingester"), contract.receipts_topic("hub-b"), "x", extra=("-i", "i2"))
    wait_for(lambda: False, 0.5)
    assert spy.messages() == []


def test_hub_publishes_nothing_outside_its_own_topics(kit: Kit, subs: list[Sub]) -> None:
    ing = _ingester(kit, subs, "#", user="monitor")
    for topic in (
        READINGS_B,
        contract.receipts_topic("hub-a"),
        "telehub/v1/hubs/hub-a/readings/extra",
        "telehub/v1/other",
    ):
        pub(kit.pw_args("hub-a"), topic, "forged", extra=("-i", "hub-a"))
    assert pub(kit.pw_args("hub-a"), READINGS_A, "own", extra=("-i", "hub-a")).returncode == 0
    assert wait_for(lambda: f"{READINGS_A} own" in ing.messages())
    assert [m for m in ing.messages() if "forged" in m] == []


def test_oversized_publish_is_refused_at_the_broker(
    kit: Kit, subs: list[Sub], tmp_path: Path
) -> None:
    ing = _ingester(kit, subs)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"s" * contract.MAX_PAYLOAD_BYTES)
    big.write_bytes(b"b" * (contract.MAX_PAYLOAD_BYTES + 16 * 1024))
    pub(kit.pw_args("hub-a"), READINGS_A, file=big, extra=("-i", "hub-a"))
    r = pub(kit.pw_args("hub-a"), READINGS_A, file=small, extra=("-i", "hub-a"))
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: any(m.endswith("s" * 100) for m in ing.messages()), 10)
    assert not any("bbbbbbbbbb" in m for m in ing.messages())

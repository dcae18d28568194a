"""The FHIR push channel: transaction Bundles of stored readings to an external FHIR server.

Durable outbox (``fhir_outbox``, one row per device record), filled by a sweep over
``readings.stored_at`` rather than in the ingest transaction: the ingester's hot path and its
commit stay independent of whether (and where) FHIR push is configured, and a sweep can also
queue history when push is switched on later. The sweep looks back further than any ingest
transaction can stay open, so nothing committed late is missed (:mod:`gateway.fhir.access`).

Each round: sweep, claim due rows (``FOR UPDATE SKIP LOCKED`` with a lease, so several workers
may run), map their readings, POST one ``transaction`` Bundle:

* ``PUT Patient/<id>`` and ``PUT Device/<id>`` (PhdDevice and the hub as PhgDevice): idempotent;
* ``POST Observation`` with ``request.ifNoneExist = identifier=<system>|<key>``: a resend (a
  lost response, a retried batch) never duplicates on a server that honours conditional create.

A batch that fails is retried with exponential backoff (capped, never abandoned: nothing lost).
A batch the server refuses with a 4xx is retried record by record in the same round, so one record
the server cannot take does not hold back the others. Test or demonstration data (HTEST) is not
uploaded (outcome ``skipped-test-data``). Errors stored and logged name only HTTP statuses and
exception types, never health data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx
import msgspec
import psycopg

from gateway.fhir import access
from gateway.fhir import mapping as m
from gateway.notify.pool import Pool, make_pool

log = logging.getLogger(__name__)

FHIR_JSON: Final = "application/fhir+json"
#: Sweep windows (access.SWEEP_WINDOW_SECONDS each) one round may cover while catching up.
MAX_SWEEPS_PER_ROUND: Final = 24


@dataclass(frozen=True, slots=True)
class PushOptions:
    url: str  # base URL of the FHIR server (the transaction is POSTed to it)
    token: str | None = None
    interval: float = 10.0  # seconds between rounds when nothing is due
    batch_size: int = 50  # device records per Bundle
    request_timeout: float = 30.0
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0
    query_timeout: float = 30.0

    @property
    def lease(self) -> float:
        return self.request_timeout * 2 + 10.0


def backoff_delay(attempts: int, options: PushOptions) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
    return float(min(options.backoff_cap, options.backoff_base * 2 ** max(0, attempts - 1)))


@dataclass(slots=True)
class PushStats:
    bundles_sent: int = 0
    records_sent: int = 0
    records_failed: int = 0
    records_skipped: int = 0
    db_errors: int = 0


@dataclass(frozen=True, slots=True)
class RoundResult:
    claimed: int
    sent: int
    failed: int
    skipped: int
    errors: tuple[str, ...] = field(default=())


def conditional(identifier: m.Resource) -> str:
    return f"identifier={identifier['system']}|{identifier['value']}"


def transaction_bundle(
    rows: Sequence[m.StoredReading],
    patients: Sequence[access.PatientRow],
    devices: Sequence[access.DeviceRow],
) -> m.Resource:
    """The transaction Bundle of these readings (with the Patients and Devices they reference)."""
    mdcs: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        mdcs.setdefault((r.hub_id, r.device_id), set()).add(r.mdc)
    resources: list[m.Resource] = [m.patient(p.patient_id, p.display_name) for p in patients]
    resources += [
        m.phd_device(d.hub_id, d.device_id, d.patient_id, d.model,
                     mdcs.get((d.hub_id, d.device_id), ()))
        for d in devices
    ]  # fmt: skip
    resources += [m.gateway_device(h) for h in sorted({r.hub_id for r in rows})]
    entries: list[m.Resource] = [
        {
            "fullUrl": f"{res['resourceType']}/{res['id']}",
            "resource": res,
            "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"},
        }
        for res in resources
    ]
    for obs in m.observations(rows):
        body = {k: v for k, v in obs.items() if k != "id"}
        entries.append(
            {
                "fullUrl": f"urn:uuid:{_uuid_of(obs['id'])}",
                "resource": body,
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": conditional(obs["identifier"][0]),
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _uuid_of(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "telehub:" + text))


def _is_test_data(rows: Sequence[m.StoredReading]) -> bool:
    return any(set(r.flags) & m.TEST_FLAGS for r in rows)


class _Response(msgspec.Struct):
    resourceType: str = ""
    type: str = ""
    entry: list[dict[str, object]] = []


_decode_response: Final = msgspec.json.Decoder(_Response)


def check_response(resp: httpx.Response, expected_entries: int) -> str | None:
    """None if the server accepted the whole transaction, else why not (no health data)."""
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}"
    try:
        body = _decode_response.decode(resp.content)
    except msgspec.DecodeError:
        return "HTTP 200 without a transaction-response Bundle"
    if body.resourceType != "Bundle" or body.type != "transaction-response":
        return "HTTP 200 without a transaction-response Bundle"
    if len(body.entry) != expected_entries:
        return "transaction-response has the wrong number of entries"
    for e in body.entry:
        response = e.get("response")
        status = response.get("status", "") if isinstance(response, dict) else ""
        if not (isinstance(status, str) and status[:1] == "2"):
            return "an entry was not accepted"
    return None


_CLAIM_SQL: Final = """
UPDATE fhir_outbox o SET next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM (SELECT time, hub_id, device_id, grp FROM fhir_outbox
      WHERE sent_at IS NULL AND next_attempt_at <= now()
      ORDER BY next_attempt_at, time LIMIT %(batch)s FOR UPDATE SKIP LOCKED) due
WHERE o.time = due.time AND o.hub_id = due.hub_id AND o.device_id = due.device_id
  AND o.grp = due.grp
RETURNING o.time, o.hub_id, o.device_id, o.grp, o.attempts"""

_KEYS: Final = """FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[])
    AS k(time, hub_id, device_id, grp) WHERE o.time = k.time AND o.hub_id = k.hub_id
    AND o.device_id = k.device_id AND o.grp = k.grp"""


def _arrays(records: Sequence[access.Record]) -> tuple[list[object], ...]:
    return tuple([k[i] for k in records] for i in range(4))


class FhirPushWorker:
    """Pushes the outbox to the configured FHIR server; ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        dsn: str,
        options: PushOptions,
        *,
        pool: Pool | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.dsn = dsn
        self.options = options
        self._pool = pool
        self._client = client
        self.stats = PushStats()

    async def run(self, stop: asyncio.Event) -> None:
        own_pool = self._pool is None
        pool = self._pool or make_pool(self.dsn, max_size=2, name="telehub-fhir-push")
        own_client = self._client is None
        client = self._client or self.make_client()
        if own_pool:
            await pool.open(wait=False)
        log.info("FHIR push worker started")
        try:
            while not stop.is_set():
                try:
                    result = await self.push_round(pool, client)
                except (psycopg.Error, TimeoutError) as exc:
                    self.stats.db_errors += 1
                    log.warning("FHIR push: database error (%s)", type(exc).__name__)
                else:
                    if result.claimed >= self.options.batch_size and not result.failed:
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.options.interval)
        finally:
            if own_client:
                await client.aclose()
            if own_pool:
                await pool.close()
            log.info("FHIR push worker stopped")

    def make_client(self) -> httpx.AsyncClient:
        headers = {"Accept": FHIR_JSON, "User-Agent": "telehub-fhir-push"}
        if self.options.token:
            headers["Authorization"] = f"Bearer {self.options.token}"
        return httpx.AsyncClient(
            timeout=self.options.request_timeout, follow_redirects=False, headers=headers
        )

    async def push_round(self, pool: Pool, client: httpx.AsyncClient) -> RoundResult:
        """One round: sweep, claim due records, send them, record the outcomes."""
        opts = self.options
        async with asyncio.timeout(opts.query_timeout), pool.connection() as conn:
            for _ in range(MAX_SWEEPS_PER_ROUND):
                _queued, caught_up = await access.sweep_into_outbox(conn)
                if caught_up:
                    break
            cur = await conn.execute(_CLAIM_SQL, {"lease": opts.lease, "batch": opts.batch_size})
            claims = {(t, h, d, g): int(a) for t, h, d, g, a in await cur.fetchall()}
            rows = await access.record_rows(conn, sorted(claims))
            by_record: dict[access.Record, list[m.StoredReading]] = {}
            for r in rows:
                by_record.setdefault(r.record, []).append(r)
            patients, devices = await access.push_context(
                conn,
                sorted({r.patient_id for r in rows}),
                sorted({(r.hub_id, r.device_id) for r in rows}),
            )
        if not claims:
            return RoundResult(0, 0, 0, 0)
        skipped = [k for k in claims if _is_test_data(by_record.get(k, []))]
        # a claimed record with no rows left (cannot happen: readings are never deleted) is
        # treated like test data: nothing to send
        skipped += [k for k in claims if k not in by_record]
        to_send = [k for k in claims if k not in skipped]
        sent: list[access.Record] = []
        failed: dict[access.Record, str] = {}
        if to_send:
            error, status = await self._send(client, to_send, by_record, patients, devices)
            if error is None:
                sent = to_send
            elif len(to_send) > 1 and status is not None and 400 <= status < 500 and status != 429:
                for k in to_send:  # one record the server refuses must not hold back the rest
                    one_error, _ = await self._send(client, [k], by_record, patients, devices)
                    if one_error is None:
                        sent.append(k)
                    else:
                        failed[k] = one_error
            else:
                failed = dict.fromkeys(to_send, error)
        async with asyncio.timeout(opts.query_timeout), pool.connection() as conn:
            await self._record(conn, sent, skipped, failed, claims)
        self.stats.records_sent += len(sent)
        self.stats.records_failed += len(failed)
        self.stats.records_skipped += len(skipped)
        if failed:
            log.warning("FHIR push: %d record(s) not accepted (%s)", len(failed),
                        sorted(set(failed.values()))[0])  # fmt: skip
        return RoundResult(
            len(claims), len(sent), len(failed), len(skipped), tuple(sorted(set(failed.values())))
        )

    async def _send(
        self,
        client: httpx.AsyncClient,
        records: Sequence[access.Record],
        by_record: dict[access.Record, list[m.StoredReading]],
        patients: Sequence[access.PatientRow],
        devices: Sequence[access.DeviceRow],
    ) -> tuple[str | None, int | None]:
        rows = [r for k in records for r in by_record[k]]
        pids = {r.patient_id for r in rows}
        devs = {(r.hub_id, r.device_id) for r in rows}
        bundle = transaction_bundle(
            rows,
            [p for p in patients if p.patient_id in pids],
            [d for d in devices if (d.hub_id, d.device_id) in devs],
        )
        try:
            resp = await client.post(
                self.options.url,
                content=m.dumps(bundle),
                headers={"Content-Type": FHIR_JSON},
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__, None
        error = check_response(resp, len(bundle["entry"]))
        if error is None:
            self.stats.bundles_sent += 1
        return error, resp.status_code

    async def _record(
        self,
        conn: psycopg.AsyncConnection[psycopg.rows.TupleRow],
        sent: Sequence[access.Record],
        skipped: Sequence[access.Record],
        failed: dict[access.Record, str],
        claims: dict[access.Record, int],
    ) -> None:
        async with conn.transaction():
            for done, outcome in ((sent, "sent"), (skipped, "skipped-test-data")):
                if done:
                    await conn.execute(
                        f"""UPDATE fhir_outbox o SET sent_at = now(), outcome = %s,
                                attempts = o.attempts + 1, last_error = NULL
                            {_KEYS}""",
                        (outcome, *_arrays(done)),
                    )
            for k, error in failed.items():
                attempts = claims[k] + 1
                await conn.execute(
                    """UPDATE fhir_outbox SET attempts = %s, last_error = %s,
                           next_attempt_at = now() + make_interval(secs => %s)
                       WHERE time = %s AND hub_id = %s AND device_id = %s AND grp = %s""",
                    (attempts, error, backoff_delay(attempts, self.options), *k),
                )

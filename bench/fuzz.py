"""Schemathesis over the whole `/openapi.json` of the running stack, at volume (issue 12).

Starts the very stack of `tests/integration/test_openapi_fuzz.py` (nats-server, conference, snapshot, chat,
one gateway, no media node) on free ports in a throwaway directory, loads the gateway's own document with
the test's configuration (a real token with every SourceFuse permission, every check) plus a 5 s
response-time check, and runs `--cases` generated cases spread evenly over every operation the test fuzzes
(`--cases / operations` each, half valid data, half invalid). Every response goes through all of
schemathesis' checks; a failure the test sets aside (`set_aside_reason`, the rules JSON Schema cannot state)
is counted by reason, not as a failure.

    uv run python bench/fuzz.py [--cases 10000]

Prints the cases run, the counts by HTTP status, the failures by operation, each distinct failure (check,
operation, status, message, a curl reproduction), the set-asides by reason and the elapsed time. Exit code 0
only with 0 server errors and 0 conformance failures. Target: both 0 in 10,000 cases. Not run in CI (the CI
test runs a bounded number of cases).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script: this directory is on sys.path (for `timing`), the repository root is not (for `tests`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from timing import pct

from tests.integration.test_openapi_fuzz import (
    NOT_FUZZED,
    fuzz_config,
    fuzz_stack,
    set_aside_reason,
)

MAX_RESPONSE_SECONDS = 5.0
# A transport error (no answer within the request timeout, connection reset) is a server failure too.
TRANSPORT = "transport"
SERVER_ERROR_CODES = frozenset({"ST101", TRANSPORT})  # not_a_server_error, or no answer at all


@dataclass
class Distinct:
    """One distinct failure: how often it happened and the first case that showed it."""

    code: str
    title: str
    operation: str
    status: int | None
    message: str
    curl: str
    body: str
    count: int = 0


@dataclass
class Tally:
    base_url: str
    cases: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    # The same by the data's kind, to see how far each kind gets (an invalid token stops at 401).
    by_mode: Counter[tuple[str, int | str]] = field(default_factory=Counter)
    failures_by_operation: Counter[str] = field(default_factory=Counter)
    set_aside: Counter[str] = field(default_factory=Counter)
    distinct: dict[tuple[str, str, int | None, str], Distinct] = field(default_factory=dict)
    server_errors: int = 0  # cases with an unexcused server error (5xx or no answer)
    conformance: int = 0  # cases with another unexcused failure (and no server error)
    latencies_ms: list[float] = field(default_factory=list)
    unsatisfied: list[str] = field(default_factory=list)  # operations whose data could not be generated

    def fail(self, case: Any, status: int | None, failures: list[tuple[str, str, str]], body: bytes) -> None:
        operation = f"{case.method} {case.path}"
        self.failures_by_operation[operation] += 1
        codes = {code for code, _, _ in failures}
        if codes & SERVER_ERROR_CODES:
            self.server_errors += 1
        else:
            self.conformance += 1
        for code, title, message in failures:
            # The first line of the message names the failure; the rest is often the generated data.
            key = (code, operation, status, message.splitlines()[0] if message else "")
            if key not in self.distinct:
                self.distinct[key] = Distinct(
                    code,
                    title,
                    operation,
                    status,
                    message,
                    _curl(case, self.base_url),
                    body[:300].decode(errors="replace"),
                )
            self.distinct[key].count += 1


def _curl(case: Any, base_url: str) -> str:
    try:
        return str(case.as_curl_command(base_url=base_url))
    except Exception as error:  # a case curl cannot express (binary multipart): say so, do not crash
        return f"(no curl: {error})"


def run_case(case: Any, mode: GenerationMode, tally: Tally, stack: Any) -> None:
    tally.cases += 1
    base_url = stack.url
    started = time.perf_counter()
    try:
        response = case.call(base_url=base_url)
    except Exception as error:  # no answer within the request timeout (a hang) or a broken connection
        tally.statuses[TRANSPORT] += 1
        tally.by_mode[mode.value, TRANSPORT] += 1
        tally.fail(case, None, [(TRANSPORT, "No response", f"{type(error).__name__}: {error}")], b"")
        return
    tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    tally.statuses[response.status_code] += 1
    tally.by_mode[mode.value, response.status_code] += 1
    try:
        case.validate_response(response, transport_kwargs={"base_url": base_url})
    except FailureGroup as group:
        log = stack.logs("gateway-0")
        remaining: list[Failure] = []
        for failure in group.exceptions:
            reason = set_aside_reason(case, response, failure, log)
            if reason is None:
                remaining.append(failure)
            else:
                tally.set_aside[f"{case.method} {case.path}: {reason}"] += 1
        if remaining:
            tally.fail(
                case,
                response.status_code,
                [(f.code, f.title, f.message) for f in remaining],
                response.content or b"",
            )


def run_operation(
    operation: Any, mode: GenerationMode, examples: int, run: int, tally: Tally, stack: Any
) -> None:
    """`examples` cases of `operation` in `mode`, each one run and tallied (none stops the others).

    Seeded by `run`: the same cases every time, and a top-up run draws other cases than the first.
    """

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],  # no shrinking: every case is tallied, none raises
    )
    @seed(run)
    def one(case: Any) -> None:
        run_case(case, mode, tally, stack)

    name = f"{operation.method.upper()} {operation.path} ({mode.value})"
    try:
        one()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
        tally.unsatisfied.append(f"{name}: no such data exists")
    except Exception as error:  # a generation error: shown, and the run goes on with the next operation
        tally.unsatisfied.append(f"{name}: {error!r}"[:300])


def report(tally: Tally, elapsed: float, operations: int) -> None:
    print(f"\ncases run: {tally.cases} over {operations} operations in {elapsed:.1f}s")
    if tally.latencies_ms:
        latencies = tally.latencies_ms
        print(
            f"response time: p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms,"
            f" max {max(latencies):.1f} ms (limit {MAX_RESPONSE_SECONDS:.0f} s)"
        )
    print(f"\n{'by HTTP status':<16} {'all':>6} {'valid':>6} {'invalid':>7}")
    for status, count in sorted(tally.statuses.items(), key=lambda item: str(item[0])):
        valid, invalid = tally.by_mode["positive", status], tally.by_mode["negative", status]
        print(f"  {status!s:<14} {count:>6} {valid:>6} {invalid:>7}")
    print(f"\nfailing cases by operation ({sum(tally.failures_by_operation.values())}):")
    for operation, count in tally.failures_by_operation.most_common():
        print(f"  {count:>6}  {operation}")
    print(f"\ndistinct failures ({len(tally.distinct)}):")
    for n, failure in enumerate(sorted(tally.distinct.values(), key=lambda f: -f.count), 1):
        print(f"\n[{n}] {failure.code} {failure.title} x{failure.count}:", end=" ")
        print(f"{failure.operation} -> {failure.status}")
        for line in failure.message.splitlines()[:12]:
            print(f"    {line}")
        print(f"    body: {failure.body}")
        print(f"    {failure.curl}")
    print(f"\nset aside by reason ({sum(tally.set_aside.values())}):")
    for reason, count in sorted(tally.set_aside.items()):
        print(f"  {count:>6}  {reason}")
    if tally.unsatisfied:
        print(f"\nnot generated ({len(tally.unsatisfied)} operation-modes):")
        for line in tally.unsatisfied:
            print(f"  {line}")
    print(f"\nserver errors: {tally.server_errors}, conformance failures: {tally.conformance}")
    met = tally.server_errors == 0 and tally.conformance == 0
    print(f"target (0 server errors, 0 conformance failures): {'met' if met else 'MISSED'}")
    print(f"elapsed: {elapsed:.1f}s")


def fuzz(cases: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="parley-fuzz-"))
    stack = fuzz_stack(root)
    started = time.perf_counter()
    stack.start()
    tally = Tally(stack.url)
    try:
        schema: Any = schemathesis.openapi.from_url(
            f"{stack.url}/openapi.json", config=fuzz_config(cases, max_response_time=MAX_RESPONSE_SECONDS)
        )
        for path in NOT_FUZZED:
            schema = schema.exclude(path=path)
        operations = [result.ok() for result in schema.get_all_operations()]
        # Cases per operation, then a top-up over the operations that took their share, for the cases the
        # others could not give (hypothesis stops when it has tried every input: the health routes have one).
        share = max(2, math.ceil(cases / len(operations)))
        print(f"{len(operations)} operations, {share} cases each (half valid, half invalid data)")
        todo = operations
        for run in range(3):
            full = []
            for index, operation in enumerate(todo, 1):
                before = tally.cases
                positive = share // 2
                run_operation(operation, GenerationMode.POSITIVE, positive, run, tally, stack)
                run_operation(operation, GenerationMode.NEGATIVE, share - positive, run, tally, stack)
                if tally.cases - before >= share:
                    full.append(operation)
                print(
                    f"  [{run}: {index}/{len(todo)}] {operation.method.upper()} {operation.path}:"
                    f" {tally.cases} cases so far",
                    flush=True,
                )
            if tally.cases >= cases or not full:
                break
            todo = full
            share = max(2, math.ceil((cases - tally.cases) / len(todo)))
            print(f"top-up: {cases - tally.cases} cases over {len(todo)} operations, {share} each")
    finally:
        stack.stop()
    report(tally, time.perf_counter() - started, len(operations))
    print(f"logs: {root / 'logs'}")
    return 0 if tally.server_errors == 0 and tally.conformance == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000)
    args = parser.parse_args()
    sys.exit(fuzz(args.cases))


if __name__ == "__main__":
    main()

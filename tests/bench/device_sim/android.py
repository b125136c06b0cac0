"""Android tablets for the benchmark: tests.support.android_agent.ReferenceAgent, the reference
client of docs/android-agent-protocol.md, enrolled over HTTP (POST /android/v1/enroll with a
2048-bit CSR) and then syncing with signed requests (a fresh nonce and timestamp per request).

An agent's state (key, certificate, policy version, what it still has to report) is carried to
the simulator processes as an AgentRecord, and the agent is rebuilt there around one of the
process's HTTP connections.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.bench.device_sim.cycles import CycleOutcome, timed
from tests.support.android_agent import ReferenceAgent

ANDROID_EMPTY = "android-empty"
ANDROID_COMMAND = "android-command"
_KEPT = ("device_id", "policy", "policy_version", "unsupported", "poll_interval", "wake", "packages")


@dataclass(frozen=True)
class AgentRecord:
    key_der: bytes
    cert_der: bytes
    chain_der: list[bytes]
    serial: str
    state: dict[str, Any]

    def simulated(self) -> ReferenceAgent:
        return self.agent()

    def agent(self) -> ReferenceAgent:
        """The enrolled agent again, without generating a key (that is what the constructor does)."""
        agent = ReferenceAgent.__new__(ReferenceAgent)
        fresh = _blank_agent()
        agent.__dict__.update(fresh.__dict__)
        key = serialization.load_der_private_key(self.key_der, None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        agent.key = key
        agent.certificate = x509.load_der_x509_certificate(self.cert_der)
        agent.chain = [x509.load_der_x509_certificate(d) for d in self.chain_der]
        agent.serial_number = self.serial
        agent.__dict__.update(self.state)
        agent._send_inventory = False  # the first sync (with inventory) was part of enrollment
        return agent


_BLANK: ReferenceAgent | None = None


def _blank_agent() -> ReferenceAgent:
    """One constructed agent per process, as the template of every rebuilt one (fresh lists)."""
    global _BLANK
    if _BLANK is None:
        _BLANK = ReferenceAgent("http://unused.invalid", client=httpx.Client())
    template = ReferenceAgent.__new__(ReferenceAgent)
    template.__dict__.update(
        {
            k: (list(v) if isinstance(v, list) else set(v) if isinstance(v, set) else v)
            for k, v in _BLANK.__dict__.items()
        }
    )
    template.http = None  # type: ignore[assignment]
    return template


def record_of(agent: ReferenceAgent) -> AgentRecord:
    assert agent.certificate is not None
    return AgentRecord(
        agent.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        agent.certificate.public_bytes(serialization.Encoding.DER),
        [c.public_bytes(serialization.Encoding.DER) for c in agent.chain],
        agent.serial_number,
        {k: getattr(agent, k) for k in _KEPT},
    )


def enroll_agents(base_url: str, token: str, count: int) -> list[AgentRecord]:
    """In a spawned process: `count` agents enroll (new 2048-bit key each) and sync once with
    their first inventory, as a freshly provisioned tablet does."""
    records = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for _ in range(count):
            serial = "R52T" + secrets.token_hex(4).upper()
            agent = ReferenceAgent(base_url, serial_number=serial, client=http)
            agent.enroll(token)
            agent.sync()
            records.append(record_of(agent))
    return records


def _sync(agent: ReferenceAgent, client: Any, outcome: CycleOutcome) -> dict[str, Any] | None:
    agent.http = client
    try:
        return timed(outcome, agent.sync)
    except Exception as exc:  # an AgentError names the status and the server's message
        outcome.errors.append(f"sync: {exc}")
        return None


def android_empty(agent: ReferenceAgent, client: Any, outcome: CycleOutcome) -> None:
    """A sync with nothing to report and nothing waiting: no policy, no commands back."""
    answer = _sync(agent, client, outcome)
    if answer is not None and (answer["commands"] or "policy" in answer):
        outcome.errors.append(f"empty sync answered {sorted(answer)} with {len(answer['commands'])} commands")


def android_command(agent: ReferenceAgent, client: Any, outcome: CycleOutcome) -> None:
    """Sync → REFRESH_INVENTORY; sync again with its acknowledgement and the inventory → nothing."""
    answer = _sync(agent, client, outcome)
    if answer is None:
        return
    commands = answer["commands"]
    if [c["type"] for c in commands] != ["REFRESH_INVENTORY"]:
        outcome.errors.append(f"expected one REFRESH_INVENTORY, got {[c['type'] for c in commands]}")
        return
    second = _sync(agent, client, outcome)
    if second is None:
        return
    if second["commands"]:
        outcome.errors.append(f"after the result, still {len(second['commands'])} commands")
        return
    outcome.acknowledged.append(commands[0]["id"])


ANDROID_CYCLES = {ANDROID_EMPTY: android_empty, ANDROID_COMMAND: android_command}

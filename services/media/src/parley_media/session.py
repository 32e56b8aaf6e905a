"""What publisher and viewer legs share: one RTCPeerConnection, its state, trickle gate and watchdog."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from aiortc import RTCPeerConnection

from .config import MediaConfig
from .ice import CandidateGate, announce_address
from .negotiation import answer


class SessionState(enum.Enum):
    NEGOTIATING = "negotiating"  # offer being applied, answer not produced yet
    CONNECTING = "connecting"  # answer returned; ICE/DTLS in progress
    CONNECTED = "connected"
    CLOSED = "closed"


class PeerSession:
    def __init__(
        self,
        config: MediaConfig,
        live_pcs: set[RTCPeerConnection],
        on_lost: Callable[[str], None],
    ) -> None:
        self.config = config
        self.pc = RTCPeerConnection(config.rtc_configuration())
        self.state = SessionState.NEGOTIATING
        self.candidates = CandidateGate()
        self._live_pcs = live_pcs
        self._live_pcs.add(self.pc)
        self._on_lost = on_lost
        self._lost_reported = False
        self._watchdog: asyncio.TimerHandle | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def _finish_negotiation(self) -> str:
        sdp = await answer(self.pc)
        await self.candidates.open(self.pc)
        if self.state is SessionState.NEGOTIATING:
            self.state = SessionState.CONNECTING
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(self.config.connect_timeout, self._on_connect_timeout)
        return announce_address(sdp, self.config.announced_address)

    def _on_connection_state(self) -> None:
        if self.state is SessionState.CLOSED:
            return  # our own close()
        state = self.pc.connectionState
        if state == "connected":
            self.state = SessionState.CONNECTED
            self._cancel_watchdog()
        elif state in ("failed", "closed"):
            self._report_lost(f"connection-{state}")

    def _on_connect_timeout(self) -> None:
        self._watchdog = None
        if self.state is SessionState.CONNECTING:
            self._report_lost("connect-timeout")

    def _report_lost(self, reason: str) -> None:
        if not self._lost_reported:
            self._lost_reported = True
            self._on_lost(reason)

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _ensure_open(self) -> None:
        """After an await in negotiation: stop if close() ran meanwhile (nothing may be attached then)."""
        if self.state is SessionState.CLOSED:
            raise RuntimeError("session closed while negotiating")

    def _begin_close(self) -> bool:
        """Mark closed (so our own teardown is not reported as a loss); False if already closing."""
        if self.state is SessionState.CLOSED:
            return False
        self.state = SessionState.CLOSED
        self._cancel_watchdog()
        return True

    async def _close_pc(self) -> None:
        try:
            await self.pc.close()
        finally:
            self._live_pcs.discard(self.pc)

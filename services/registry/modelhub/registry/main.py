"""Registry entry point: `python -m modelhub.registry` (settings from MODELHUB_REGISTRY_*)."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.sdk.trace import TracerProvider

from modelhub.common.db import Database
from modelhub.common.server import ServiceRuntime, serve_until_signalled
from modelhub.common.telemetry import setup_logging, setup_tracing, shutdown_tracing
from modelhub.registry import api
from modelhub.registry.blobs import BlobStore
from modelhub.registry.migrate import check_schema
from modelhub.registry.service import ChangeNotifier, RegistryService
from modelhub.registry.settings import RegistrySettings
from modelhub.registry.store.store import RegistryStore

log = logging.getLogger("modelhub.registry")


class RegistryApp:
    """The registry wired together: database → store → domain service → gRPC runtime."""

    def __init__(
        self, settings: RegistrySettings, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.settings = settings
        self.db = Database.from_url(settings.database_url, "registry")
        notifier = ChangeNotifier()
        self.store = RegistryStore(self.db, settings.watch_history, on_commit=notifier.notify)
        self.service = RegistryService(
            self.store,
            BlobStore(settings.blob_dir),
            notifier,
            max_upload_bytes=settings.max_upload_bytes,
            watch_progress_s=settings.watch_progress_s,
            watch_poll_s=settings.watch_poll_s,
            claim_grace_s=settings.claim_grace_s,
            upload_session_ttl_s=settings.upload_session_ttl_s,
            max_upload_sessions=settings.max_upload_sessions,
        )
        self.runtime = ServiceRuntime(
            "registry", settings, api.ROLES, tracer_provider=tracer_provider
        )
        self.runtime.add_service(
            api.SERVICE_NAME, api.add_to_server, api.RegistryServicer(self.service)
        )
        self.runtime.on_stop(self.service.close)

    async def prepare(self) -> None:
        """Check the schema and clean crash debris; call before serving."""
        if self.settings.check_schema:
            await check_schema(self.db.engine)
        await self.service.start(self.settings.cleanup_orphans)

    async def start(self) -> None:
        await self.prepare()
        await self.runtime.start()

    async def stop(self, grace: float | None = None) -> None:
        await self.runtime.stop(grace)
        await self.db.close()

    @property
    def address(self) -> str:
        return self.runtime.address


async def run(settings: RegistrySettings) -> None:
    provider = setup_tracing("modelhub-registry")
    app = RegistryApp(settings, provider)
    try:
        await app.prepare()
    except Exception:
        await app.db.close()
        raise

    async def cleanup() -> None:
        await app.db.close()
        shutdown_tracing()

    await serve_until_signalled(app.runtime, cleanup)


def main() -> None:
    settings = RegistrySettings()
    setup_logging("registry", settings.log.level, settings.log.format)
    try:
        asyncio.run(run(settings))
    except Exception as exc:
        from modelhub.common.errors import ModelHubError

        if isinstance(exc, ModelHubError):
            log.error("registry cannot start: %s", exc.message)
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    main()

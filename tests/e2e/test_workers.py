"""`serve --workers 2`: several processes, one set of metrics, every email once."""

from collections.abc import Callable

from tests.support.e2e import (
    assert_each_delivered_once,
    sign_up_many,
    started_count,
    until_every_welcome_succeeded,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import ServerProcess
from tests.support.smtp import SMTPServer


async def test_two_workers_serve_signups_and_any_worker_reports_the_metrics_of_both(
    database: tuple[PostgresCluster, str],
    smtp: SMTPServer,
    server_env: dict[str, str],
    start_server: Callable[..., ServerProcess],
) -> None:
    cluster, url = database
    server = start_server(server_env, "--workers", "2")

    await sign_up_many(server, 40)
    await until_every_welcome_succeeded(cluster, url, 40, timeout=60)

    assert_each_delivered_once(smtp, 40)
    # Connections land on either worker; each scrape must add up both.
    assert {started_count(server) for _ in range(6)} == {40}

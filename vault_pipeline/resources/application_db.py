"""The application's database (VAULT_APP_DATABASE_URL) as the source of the app-table change feed.

The DSN arrives as EnvVar (the UI shows only the variable name); it may name another server than the
tracking database. hot_bucket_sensor asks for the feed on every tick and Dagster builds resources again for
each tick, so the feed (its read-only connection pool, its validated statements) is kept per process.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from vault_pipeline.intake.app_table_feed import AppTableConfig, AppTableFeed, AppTableSource, parse_cursor_columns
from vault_pipeline.intake.changes import ChangeFeed
from vault_pipeline.resources.change_feeds import FeedCache
from vault_pipeline.resources.tracking_db import shared_store

_feeds: FeedCache[AppTableFeed] = FeedCache()


def shared_app_table_feed(dsn: str, tracking_dsn: str, config: AppTableConfig, hot_bucket: str) -> AppTableFeed:
    """One feed per application database, tracking database, configuration and bucket per process. The
    configuration is checked against the database when the feed is made (AppTableConfigError names the
    variable); a feed that could not be made is tried again on the next tick."""
    return _feeds.get((dsn, tracking_dsn, config, hot_bucket), lambda: AppTableFeed(
        AppTableSource(dsn, config), shared_store(tracking_dsn), hot_bucket=hot_bucket))


def close_shared_app_table_feeds() -> None:
    """Close and forget every cached feed (tests dropping their databases, CLI commands at exit)."""
    _feeds.close_all()


class ApplicationDatabaseResource(ConfigurableResource):
    """VAULT_APP_DATABASE_URL and what to read there: VAULT_APP_DOCUMENTS_TABLE or VAULT_APP_DOCUMENTS_QUERY,
    VAULT_APP_KEY_COLUMN, VAULT_APP_CURSOR_COLUMNS and the optional VAULT_APP_DOCUMENT_ID_COLUMN,
    VAULT_APP_USER_ID_COLUMN, VAULT_APP_DOCUMENT_TYPE_COLUMN (empty: the table has none)."""

    dsn: str
    tracking_dsn: str
    table: str = "documents"
    query: str = ""
    key_column: str = "key"
    cursor_columns: str = "id"
    document_id_column: str = ""
    user_id_column: str = ""
    document_type_column: str = ""

    def table_config(self) -> AppTableConfig:
        return AppTableConfig(
            table=self.table, query=self.query, key_column=self.key_column.strip(),
            cursor_columns=parse_cursor_columns(self.cursor_columns),
            document_id_column=self.document_id_column.strip(), user_id_column=self.user_id_column.strip(),
            document_type_column=self.document_type_column.strip())

    def feed(self, *, hot_bucket: str) -> ChangeFeed:
        return shared_app_table_feed(self.dsn, self.tracking_dsn, self.table_config(), hot_bucket)

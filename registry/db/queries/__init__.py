"""Every query the services run, one module per domain. Services never build SQL themselves."""

from registry.db.queries.audit import list_audit_events
from registry.db.queries.bases import (
    ensure_base,
    ensure_base_sha,
    find_base_shas,
    get_base_by_digest,
    get_base_sha,
    get_bases_by_name,
    list_bases,
)
from registry.db.queries.blobs import (
    known_blobs,
    record_blob,
    record_upload,
    visible_blobs,
)
from registry.db.queries.cards import add_card, card_of
from registry.db.queries.evals import delete_metrics, metrics_of
from registry.db.queries.jobs import find_reusable_job, get_job, list_jobs, unfinished_jobs
from registry.db.queries.labels import label_history, labels_of
from registry.db.queries.repos import (
    count_versions,
    delete_repository,
    ensure_repository,
    get_repository,
    list_repositories,
    readable,
)
from registry.db.queries.search import details, search, write_all_documents, write_document
from registry.db.queries.tags import (
    get_tag,
    get_tag_with_version,
    insert_tag_if_absent,
    list_tags,
    tag_history,
    tags_by_version,
    tags_of_version,
)
from registry.db.queries.tokens import (
    any_active_admin,
    get_token,
    list_tokens,
    token_query,
    touch_token,
)
from registry.db.queries.versions import (
    add_files,
    find_versions,
    list_versions,
    newest_unyanked_version,
    next_version_number,
    resolve_query,
    versions_on_base,
)
from registry.db.queries.webhooks import (
    deliveries_of,
    due_deliveries,
    get_delivery,
    get_webhook,
    list_webhooks,
    webhooks_for,
)

__all__ = [
    "add_card",
    "add_files",
    "any_active_admin",
    "card_of",
    "count_versions",
    "delete_metrics",
    "delete_repository",
    "deliveries_of",
    "details",
    "due_deliveries",
    "ensure_base",
    "ensure_base_sha",
    "ensure_repository",
    "find_base_shas",
    "find_reusable_job",
    "find_versions",
    "get_base_by_digest",
    "get_base_sha",
    "get_bases_by_name",
    "get_delivery",
    "get_job",
    "get_repository",
    "get_tag",
    "get_tag_with_version",
    "get_token",
    "get_webhook",
    "insert_tag_if_absent",
    "known_blobs",
    "label_history",
    "labels_of",
    "list_audit_events",
    "list_bases",
    "list_jobs",
    "list_repositories",
    "list_tags",
    "list_tokens",
    "list_versions",
    "list_webhooks",
    "metrics_of",
    "newest_unyanked_version",
    "next_version_number",
    "readable",
    "record_blob",
    "record_upload",
    "resolve_query",
    "search",
    "tag_history",
    "tags_by_version",
    "tags_of_version",
    "token_query",
    "touch_token",
    "unfinished_jobs",
    "versions_on_base",
    "visible_blobs",
    "webhooks_for",
    "write_all_documents",
    "write_document",
]

"""``huggingface_hub``'s exceptions as registry errors that say what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2  # huggingface_hub's HTTP client: its transport errors are what an unreachable Hub raises
from huggingface_hub import constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from registry.errors import Forbidden, NotFound, Unauthorized, Unavailable


class HubUnavailable(Unavailable):
    """The Hub could not be reached, or failed: a network or server error, not the user's input."""

    code = "hub_unavailable"


@contextmanager
def hub_errors(repo_id: str, revision: str, endpoint: str) -> Iterator[None]:
    """Turn what ``huggingface_hub`` raises about ``repo_id`` at ``revision`` on ``endpoint`` into
    registry errors."""
    try:
        yield
    except GatedRepoError:
        raise Forbidden(
            f"{repo_id} on {endpoint} is gated: accept its terms on the Hub, then set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise NotFound(
            f"no repository {repo_id} on {endpoint} "
            "(check the name and --endpoint; a private one needs HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise NotFound(
            f"{repo_id} on {endpoint} has no revision {revision!r} (a branch, tag or commit SHA)"
        ) from None
    except RemoteEntryNotFoundError as exc:
        missing = exc.server_message or "a file is missing"
        raise NotFound(f"{repo_id}@{revision} on {endpoint}: {missing}") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        if not constants.HF_HUB_OFFLINE:  # huggingface_hub's word for "the Hub went away mid-download"
            raise HubUnavailable(f"cannot reach {endpoint} for {repo_id}@{revision}: {exc}") from None
        raise NotFound(
            f"{repo_id}@{revision} is not in the local HF cache, and HF_HUB_OFFLINE=1 forbids fetching it "
            f"from {endpoint}: unset HF_HUB_OFFLINE"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise Unauthorized(f"{endpoint} refused the credentials for {repo_id}: set HF_TOKEN") from None
        if status == 403:
            raise Forbidden(f"{endpoint} does not let this token read {repo_id}") from None
        if status == 404:
            raise NotFound(
                f"{endpoint} has nothing for {repo_id}@{revision}: is it a Hub-compatible endpoint "
                "(a lorareg's ends in /hf)?"
            ) from None
        raise HubUnavailable(f"{endpoint} failed on {repo_id}@{revision}: {exc}") from None
    except httpx2.TransportError as exc:
        raise HubUnavailable(f"cannot reach {endpoint}: {exc} (check --endpoint or HF_ENDPOINT)") from None

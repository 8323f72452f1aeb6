"""The client's exceptions: each str() is one line naming the cause."""

from __future__ import annotations

import grpc


class RaftflowError(Exception):
    """Base of every client failure; str() is one line naming the cause."""


class Unavailable(RaftflowError):
    """No node reachable, no quorum, or no leader within the grace period."""


class InvalidArgument(RaftflowError):
    """The request is malformed; nothing was changed."""


class Busy(RaftflowError):
    """The leader refused the command for lack of room until the deadline."""


class OutcomeUnknown(RaftflowError):
    """The deadline passed while the command may or may not have been applied."""


class NotFound(RaftflowError):
    """No such workflow, run or workflow type."""


class AlreadyExists(RaftflowError):
    """A workflow with this id is running (start it with return_running to get it)."""


class FailedPrecondition(RaftflowError):
    """The command does not apply to the state it met: a stale task token (the
    attempt timed out, was retried or the workflow closed), a closed workflow."""


class Unauthenticated(RaftflowError):
    """The call carried no token, or one the cluster does not know (unknown,
    revoked, expired); the message says how to get one."""


class PermissionDenied(RaftflowError):
    """The token is valid but its role (or a worker's task queues) does not allow this."""


class Rejected(RaftflowError):
    """The workflow engine refused the command (it changed nothing); `code` says how."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


ACCESS_ERRORS = {  # the token, not the command: the same answer from every node
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}
REJECTION_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Busy,
    **ACCESS_ERRORS,
}


def rejection(code: grpc.StatusCode, message: str) -> RaftflowError:
    """The exception for a command the engine refused (applied, changed nothing)."""
    return REJECTION_ERRORS.get(code, RaftflowError)(message)

"""All models, imported here so Alembic and the app see every table."""
from athena.models.executions import (
    COUNTER_BUCKETS,
    IN_PROGRESS_STATUSES,
    MODES,
    STATUSES,
    TERMINAL_STATUSES,
    WorkflowApproval,
    WorkflowExecution,
    WorkflowExecutionData,
)
from athena.models.llm import (
    CALLER_TYPES,
    CAPABILITIES,
    Account,
    LargeLanguageModel,
    LlmUsage,
    Provider,
)
from athena.models.users import ApiToken, Organization, User
from athena.models.workflows import VISIBILITIES, Workflow, WorkflowFavorite
from athena.models.workspaces import ROLES, WRITE_ROLES, Workspace, WorkspaceMember

__all__ = [
    "ApiToken", "Organization", "User", "Workspace", "WorkspaceMember", "ROLES", "WRITE_ROLES",
    "Workflow", "WorkflowFavorite", "VISIBILITIES", "WorkflowExecution", "WorkflowExecutionData",
    "WorkflowApproval", "STATUSES", "TERMINAL_STATUSES", "IN_PROGRESS_STATUSES", "MODES",
    "COUNTER_BUCKETS", "Provider", "Account", "LargeLanguageModel", "LlmUsage", "CAPABILITIES", "CALLER_TYPES",
]

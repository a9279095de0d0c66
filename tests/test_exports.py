"""Each package's public surface, pinned: adding or removing a public name must be a
deliberate change to this file as well as to the package's `__all__`."""

import importlib
import inspect
import re
from types import ModuleType
from typing import Final

import pytest

import kelpie.errors

PUBLIC_SURFACES: Final[dict[str, tuple[str, ...]]] = {
    "kelpie.agent": (
        "CORE_MEMORY_PLACEHOLDER",
        "HEARTBEAT_AGENT_TYPES",
        "LINE_NUMBER_WARNING",
        "TOOL_RULES_DESCRIPTION",
        "AgentLoop",
        "ApprovalReply",
        "ClientSkill",
        "Item",
        "NoEvents",
        "NothingToCompact",
        "Turn",
        "TurnEvents",
        "TurnResult",
        "WriteWithEvents",
        "append_available_skills",
        "available_skills_section",
        "closing_items",
        "compaction_mode",
        "compile_system_prompt",
        "error_item",
        "expand",
        "expand_all",
        "format_letta_time",
        "item_otid",
        "plan_compaction",
        "stop_item",
        "summarize",
        "summary_fields",
        "tool_rule_prompt",
        "usage_statistics",
        "uses_line_numbers",
    ),
    "kelpie.api": ("create_app",),
    "kelpie.env": (
        "Clock",
        "Config",
        "Entropy",
        "Env",
        "SystemClock",
        "system_entropy",
    ),
    "kelpie.llm": (
        "ANTHROPIC_MAX_TOKENS_DEFAULT",
        "LLM_ATTEMPTS_MAX",
        "LLM_REQUEST_TIMEOUT_S",
        "LOCAL_EMBEDDING",
        "SUPPORTED_ENDPOINT_TYPES",
        "AnthropicClient",
        "ChatMessage",
        "FinishReason",
        "LlmClient",
        "LlmDelta",
        "LlmError",
        "LlmInvalidResponse",
        "LlmProviderFailed",
        "LlmProviders",
        "LlmRateLimited",
        "LlmRequest",
        "LlmResponse",
        "LlmRouter",
        "LlmTimeout",
        "MeteredLlm",
        "ModelCatalog",
        "OnDelta",
        "OpenAIClient",
        "Provider",
        "ProviderCatalog",
        "RetryingLlm",
        "Role",
        "ScriptedLlm",
        "ScriptedProviders",
        "ToolCall",
        "ToolSpec",
        "Usage",
        "configured_providers",
        "scripted_deltas",
        "split_handle",
    ),
    "kelpie.mcp": (
        "MCP_CALL_TIMEOUT_S_DEFAULT",
        "MCP_CONNECT_TIMEOUT_S",
        "MCP_LIST_TIMEOUT_S",
        "MCP_RESULT_CHARS_MAX",
        "MCP_TRANSPORTS",
        "McpCallResult",
        "McpClients",
        "McpConnections",
        "McpServerSpec",
        "McpTool",
        "McpTransport",
        "McpUnavailable",
        "StdioLaunch",
        "StdioLauncher",
        "StdioRefused",
    ),
    "kelpie.memory": (
        "EMBED_BATCH_TEXTS_MAX",
        "EMBED_TEXT_CHARS_MAX",
        "HASHING_DIM",
        "HASHING_MODEL",
        "LOCAL_DIM",
        "LOCAL_MODEL",
        "OPENAI_EMBEDDING_DIMS",
        "PENDING_EMBEDDED_ON_SEARCH_MAX",
        "RRF_K",
        "VECTOR_CACHE_BYTES_MAX",
        "Embedder",
        "EmbeddingFailed",
        "HashingEmbedder",
        "LocalEmbedder",
        "MemorySearch",
        "OpenAIEmbedder",
        "VectorCache",
        "VectorFilter",
        "archival_result",
        "archive_id_of",
        "keyword_query",
        "normalised",
        "reciprocal_rank_fusion",
        "vector_bytes",
    ),
    "kelpie.obs": (
        "HTTP_METHODS",
        "LABEL_VALUES_MAX",
        "LABEL_VALUE_CHARS_MAX",
        "LOG_FORMATS",
        "METRICS_CONTENT_TYPE",
        "OTHER",
        "UNROUTED",
        "JsonFormatter",
        "LogFormat",
        "Metrics",
        "configure_logging",
    ),
    "kelpie.runtime": (
        "ACTIVE_AGENTS_MAX_DEFAULT",
        "IDLE_TIMEOUT_S_DEFAULT",
        "MAILBOX_DEPTH_MAX",
        "Activation",
        "AgentRuntime",
        "ConversationBusy",
        "MailboxFull",
    ),
    "kelpie.sandbox": (
        "MIB",
        "SANDBOX_FILE_BYTES_MAX",
        "SANDBOX_MEMORY_BYTES_DEFAULT",
        "SANDBOX_OPEN_FILES_MAX",
        "SANDBOX_OUTPUT_BYTES_MAX",
        "SANDBOX_POOL_SIZE_DEFAULT",
        "SANDBOX_PROCESSES_MAX",
        "SANDBOX_RESULT_BYTES_MAX",
        "SANDBOX_TMP_BYTES_MAX",
        "SANDBOX_WORKSPACE_DIR",
        "TOOL_TIMEOUT_S_DEFAULT",
        "TOOL_TIMEOUT_S_MAX",
        "WORKSPACE_BYTES_MAX_DEFAULT",
        "CodeSessions",
        "ConfineRefused",
        "ConfinedCommand",
        "GvisorSessions",
        "HostCallAnswer",
        "HostCalls",
        "ProcessSandbox",
        "ProgramLimits",
        "ProgramSandbox",
        "Sandbox",
        "SandboxDescription",
        "SandboxLimits",
        "SessionsOff",
        "ToolAgentState",
        "ToolJob",
        "ToolJobResult",
        "ToolStub",
        "WorkspaceError",
        "WorkspaceFile",
        "WorkspaceFileMissing",
        "WorkspaceFull",
        "Workspaces",
    ),
    "kelpie.schemas": (
        "AGENT_PREFIX",
        "AGENT_TAG_CHARS_MAX",
        "AGENT_TYPE_DEFAULT",
        "ARCHIVE_NAME_CHARS_MAX",
        "ARCHIVE_PREFIX",
        "BLOCK_HISTORY_ENTRIES_MAX",
        "BLOCK_HISTORY_SEQ_MAX",
        "BLOCK_LIMIT_CHARS_DEFAULT",
        "BLOCK_PREFIX",
        "BLOCK_VALUE_CHARS_MAX",
        "CONVERSATION_PREFIX",
        "DEFAULT_BLOCK_DESCRIPTIONS",
        "DEFAULT_CONVERSATION_ID",
        "MAX_STEPS_DEFAULT",
        "MCP_METADATA_KEY",
        "MCP_SERVER_PREFIX",
        "MCP_TOOL_TAG_PREFIX",
        "MESSAGE_PREFIX",
        "PASSAGES_PER_BATCH_MAX",
        "PASSAGE_PREFIX",
        "PASSAGE_TAGS_MAX",
        "PASSAGE_TEXT_CHARS_MAX",
        "RETURN_CHAR_LIMIT_DEFAULT",
        "RUN_PREFIX",
        "SEARCH_QUERY_CHARS_MAX",
        "SEARCH_RESULTS_MAX",
        "STEP_PREFIX",
        "STREAM_DONE",
        "TOOL_PREFIX",
        "WORKING_MEMORY_KEYS_MAX",
        "WORKING_MEMORY_KEY_CHARS_MAX",
        "WORKING_MEMORY_KEY_PATTERN",
        "WORKING_MEMORY_TTL_S_MAX",
        "WORKING_MEMORY_VALUE_BYTES_MAX",
        "AgentConfig",
        "AgentCreate",
        "AgentFields",
        "AgentFile",
        "AgentFileAgent",
        "AgentFileBlock",
        "AgentFileMessage",
        "AgentFileTool",
        "AgentFileToolCall",
        "AgentFileToolCallFunction",
        "AgentFileToolReturn",
        "AgentId",
        "AgentInclude",
        "AgentState",
        "AgentType",
        "AgentUpdate",
        "ApprovalCreate",
        "ApprovalDecision",
        "ArchivalSearchResponse",
        "ArchivalSearchResult",
        "Archive",
        "ArchiveCreate",
        "ArchiveUpdate",
        "Block",
        "BlockChangeSource",
        "BlockCreate",
        "BlockHistoryEntry",
        "BlockId",
        "BlockUpdate",
        "BlockVersion",
        "BlockVersionSide",
        "ClientSkill",
        "ClientTool",
        "CodeCallAnswer",
        "CodePause",
        "CompactionRequest",
        "CompactionResponse",
        "ContentPart",
        "Conversation",
        "ConversationCreate",
        "ConversationMessageRequest",
        "ConversationUpdate",
        "EmbeddingConfig",
        "EmbeddingModel",
        "ImportedAgents",
        "InputMessage",
        "JsonRejected",
        "LettaMessage",
        "LettaMessageType",
        "LettaRequest",
        "LettaResponse",
        "LlmConfig",
        "McpServer",
        "McpServerCreate",
        "McpServerType",
        "McpServerUpdate",
        "McpServersFile",
        "McpToolRunRequest",
        "Memory",
        "Message",
        "MessageCreate",
        "MessageRole",
        "MessageSearchRequest",
        "Model",
        "Passage",
        "PassageBatchCreate",
        "PassageCreate",
        "PassageSearchHit",
        "PassageSearchRequest",
        "PipRequirement",
        "RequestModel",
        "ResponseModel",
        "RetrieveStreamRequest",
        "Run",
        "RunEvent",
        "RunStatus",
        "SearchMode",
        "Secret",
        "StdioSandbox",
        "Step",
        "StopReason",
        "StopReasonOut",
        "StoredToolCall",
        "TagMatchMode",
        "TextContent",
        "Tool",
        "ToolCallOut",
        "ToolCreate",
        "ToolExecutionResult",
        "ToolId",
        "ToolResult",
        "ToolReturnCreate",
        "ToolRule",
        "ToolRunFromSource",
        "ToolRunRequest",
        "ToolType",
        "ToolUpdate",
        "UsageStatistics",
        "WorkingMemoryEntry",
        "WorkingMemorySet",
        "WorkspaceFileEntry",
        "WorkspaceListing",
        "block_version",
        "datetime_from_us",
        "decode_json",
        "describe_validation_errors",
        "id_pattern",
        "is_valid_id",
        "limit_error",
        "us_from_datetime",
        "working_memory_entry",
        "working_memory_key_error",
        "working_memory_ttl_error",
        "working_memory_value_json",
    ),
    "kelpie.service": (
        "WORKSPACE_UPLOAD_BYTES_MAX",
        "AgentExporter",
        "AgentImporter",
        "AgentService",
        "ArchiveService",
        "AwaitingApproval",
        "BlockService",
        "ContextService",
        "ConversationService",
        "ImportOptions",
        "LiveStream",
        "McpServerService",
        "MessageLookup",
        "MessageService",
        "Reattached",
        "RecallService",
        "StartedTurn",
        "StoredStream",
        "ToolRunService",
        "ToolService",
        "WorkingMemoryService",
        "WorkspaceService",
        "prepare",
        "thread_of",
    ),
    "kelpie.sim": (
        "SIM_EPOCH_US",
        "SIM_LOOP_ITERATIONS_MAX",
        "SIM_VIRTUAL_TIME_S_MAX",
        "FaultPlan",
        "SimClock",
        "SimDeadlock",
        "SimError",
        "SimEventLoop",
        "SimForbidden",
        "SimLimitExceeded",
        "SimResult",
        "SimUnhandledError",
        "run_seed",
        "run_simulation",
        "running_sim_loop",
    ),
    "kelpie.storage": (
        "PAGE_LIMIT_MAX",
        "SEARCHABLE_ROLES",
        "SEARCH_KINDS",
        "AgentQuery",
        "AgentsImport",
        "ArchiveQuery",
        "BlockChange",
        "BlockQuery",
        "ChangedBlock",
        "ConversationQuery",
        "MessageQuery",
        "NewAgent",
        "Page",
        "RunQuery",
        "SearchFilter",
        "SearchKind",
        "SqliteStore",
        "StepCommit",
        "StorageConflict",
        "StorageUnavailable",
        "Store",
        "ThreadUpdate",
        "ToolQuery",
        "VectorRows",
        "WorkingMemoryFull",
        "message_search_text",
    ),
    "kelpie.tools": (
        "BASE_TOOLS",
        "BASE_TOOLS_BY_NAME",
        "BASE_TOOL_NAMES",
        "BUILTIN_TOOLS",
        "INJECTED_PARAMS",
        "LOOP_ARGUMENTS",
        "MEMORY_TOOL_NAMES",
        "SANDBOX_METADATA_KEY",
        "WORKING_MEMORY_TOOLS",
        "WORKING_MEMORY_TOOL_NAMES",
        "BuiltinTool",
        "CodeResume",
        "CustomToolRunner",
        "DerivedTool",
        "FunctionSignature",
        "McpToolRunner",
        "MemoryBlock",
        "MemoryEdit",
        "SandboxSettings",
        "ToolOutcome",
        "ToolRegistry",
        "ToolReturn",
        "ToolRunner",
        "ToolSession",
        "UnavailableRunner",
        "WorkingMemoryCall",
        "agent_state_json",
        "base_tool_rules",
        "call_mcp_tool",
        "changed_values",
        "check_schema_matches",
        "default_registry",
        "default_tool_names",
        "derive_tool_schema",
        "exception_text",
        "function_signature",
        "mcp_spec",
        "mcp_tool_record",
        "parse_working_memory_call",
        "run_memory_tool",
        "sandbox_settings",
        "server_id_of",
        "tool_return",
    ),
    "kelpie.web": (
        "EXA_SEARCH_URL",
        "FETCH_BYTES_MAX",
        "FETCH_REDIRECTS_MAX",
        "FETCH_TIMEOUT_S",
        "SEARCH_BYTES_MAX",
        "SEARCH_RESULTS_DEFAULT",
        "SEARCH_RESULTS_MAX",
        "SEARCH_TEXT_CHARS_MAX",
        "SEARCH_TIMEOUT_S",
        "FetchedPage",
        "HttpWeb",
        "SearchOptions",
        "SearchResult",
        "Web",
        "WebError",
        "WebRefused",
    ),
}
PACKAGES: Final = tuple(PUBLIC_SURFACES)
# kelpie.errors is a module without `__all__`: its surface is the error tree.
ERROR_CLASSES: Final = {
    "KelpieError": Exception,
    "InvalidInput": kelpie.errors.KelpieError,
    "ValidationFailed": kelpie.errors.InvalidInput,
    "NotFound": kelpie.errors.KelpieError,
    "Conflict": kelpie.errors.KelpieError,
    "Expired": kelpie.errors.KelpieError,
    "TooLarge": kelpie.errors.KelpieError,
    "Unavailable": kelpie.errors.KelpieError,
}
_DIGITS: Final = re.compile(r"(\d+)")


def _ruff_all_key(name: str) -> tuple[int, tuple[tuple[int, int | str], ...]]:
    """The order ruff's RUF022 wants in `__all__`: SCREAMING_SNAKE_CASE, then CamelCase,
    then everything else, each group in natural order (digit runs compare as numbers)."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(name) if part
    )
    return group, parts


def _public_names(module: ModuleType) -> set[str]:
    """Names a caller can import that are neither private nor submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def _all(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{package} has no __all__ list"
    assert all(isinstance(name, str) for name in names)
    return names


def test_ruff_all_key_orders_constants_then_classes_then_functions() -> None:
    names = ["run", "Sim", "SIM_2", "SIM_10", "X", "a10", "a9", "BASE_TOOL_NAMES", "BASE_TOOLS"]
    assert sorted(names, key=_ruff_all_key) == [
        "BASE_TOOLS",
        "BASE_TOOL_NAMES",
        "SIM_2",
        "SIM_10",
        "Sim",
        "X",
        "a9",
        "a10",
        "run",
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_all_is_pinned(package: str) -> None:
    assert tuple(_all(package)) == PUBLIC_SURFACES[package]


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_every_name_in_all_exists(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in _all(package) if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_all_is_sorted_as_ruff_wants(package: str) -> None:
    names = _all(package)
    assert names == sorted(names, key=_ruff_all_key)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_all_covers_every_public_name(package: str) -> None:
    # A name imported into the package without being listed is public by accident.
    module = importlib.import_module(package)
    assert _public_names(module) == set(_all(package))


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_star_import_yields_exactly_all(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(_all(package))


def test_exports_errors_module_is_the_error_tree() -> None:
    assert not hasattr(kelpie.errors, "__all__")
    assert _public_names(kelpie.errors) == set(ERROR_CLASSES)
    for name, parent in ERROR_CLASSES.items():
        error_class = getattr(kelpie.errors, name)
        assert inspect.isclass(error_class)
        assert error_class.__bases__ == (parent,), name


def test_exports_errors_carry_detail() -> None:
    error = kelpie.errors.ValidationFailed("bad value")
    assert error.detail == "bad value"
    assert str(error) == "bad value"
    assert isinstance(error, kelpie.errors.InvalidInput)

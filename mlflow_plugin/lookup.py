"""Check a model URI before loading it: errors that name the store and the way out.

MLflow answers a mistyped URI with ``Registered Model with name=... not found`` or
``No such artifact`` and, for a ``sqlite:///`` store that does not exist, silently
creates an empty one (printing its table-creation lines). :func:`check_model_uri`
runs first and never creates anything: it says which store it looked in, what that
store holds (registered models, their aliases and versions) and what to run next.

Example:
    >>> try:
    ...     check_model_uri("odin-resnet20@champion", "sqlite:////tmp/none/mlflow.db")
    ... except ModelLoadError as err:
    ...     print(str(err).split(": ")[-1])
    no such folder, and no scheme. Did you mean models:/odin-resnet20@champion?
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from odin_monitor.errors import ModelLoadError

__all__ = ["check_model_uri", "sqlite_path"]

_FILL = (
    "Fill a store with: odin-monitor calibrate ... --out DIR, then "
    "odin-monitor log DIR --register NAME --alias champion."
)
_SCHEMES = ("models:/", "runs:/", "file:", "s3:", "gs:", "wasbs:", "abfss:", "http:", "https:")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores).

    Example:
        >>> sqlite_path("sqlite:////tmp/x/mlflow.db").as_posix()
        '/tmp/x/mlflow.db'
    """
    if not tracking_uri.startswith("sqlite:"):
        return None
    path = unquote(urlparse(tracking_uri).path)
    return Path(path[1:] if path.startswith("//") else path)


def _listing(names: list[str], what: str, limit: int = 12) -> str:
    shown = ", ".join(sorted(names)[:limit]) + (" ..." if len(names) > limit else "")
    return f"{what}: {shown}" if names else f"no {what}"


def _check_store(tracking_uri: str) -> None:
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise ModelLoadError(
            f"Expected an MLflow store at {tracking_uri}, but {db} does not exist (nothing "
            "was created). Run from the folder that holds mlflow.db, pass --tracking-uri or "
            f"set MLFLOW_TRACKING_URI. {_FILL}"
        )


def _check_registered(uri: str, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    body = uri.removeprefix("models:/")
    name, sep, ref = body.partition("@") if "@" in body else body.partition("/")
    if not name or (sep and not ref):
        raise ModelLoadError(
            f"Expected models:/NAME@ALIAS or models:/NAME/VERSION, but got {uri!r}."
        )
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = [m.name for m in client.search_registered_models(max_results=100)]
        held = _listing(names, "registered models") if names else "no registered models"
        raise ModelLoadError(
            f"Expected a registered model {name!r} in {tracking_uri}, but the store holds "
            f"{held}. " + ("" if names else _FILL)
        ) from None
    if not sep:
        return
    if "@" in body:
        aliases = dict(model.aliases or {})
        if ref not in aliases:
            raise ModelLoadError(
                f"Expected an alias {ref!r} of {name!r} in {tracking_uri}, but {name} has "
                f"{_listing([f'@{a}' for a in aliases], 'aliases')}. Set one with "
                f"odin-monitor register ... --alias {ref}, or use models:/{name}/VERSION."
            )
        return
    if ref.isdigit():
        versions = [str(v.version) for v in client.search_model_versions(f"name = '{name}'")]
        if ref not in versions:
            raise ModelLoadError(
                f"Expected version {ref} of {name!r} in {tracking_uri}, but it has "
                f"{_listing([str(v) for v in versions], 'versions')}."
            )


def check_model_uri(uri: str, tracking_uri: str) -> None:
    """Refuse a model URI that cannot load, with what was looked up and what exists.

    Never creates a store. Checks: a local folder exists and holds ``MLmodel``; a
    ``models:/`` URI's store exists, holds the registered model, the alias or the
    version; a bare ``NAME@ALIAS`` is a ``models:/`` URI missing its scheme.

    Args:
        uri: A folder, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
            ``runs:/RUN_ID/NAME`` or another MLflow artifact URI.
        tracking_uri: The tracking (and registry) URI the model is read from.

    Raises:
        ModelLoadError: With the store, what it holds and what to run next.
    """
    local = Path(uri).expanduser()
    if local.is_dir():
        if not (local / "MLmodel").is_file():
            raise ModelLoadError(
                f"Expected an MLflow model folder (with an MLmodel file) at {local}, but there "
                "is no MLmodel: pass the model folder, e.g. the model/ inside the folder of "
                "odin-monitor calibrate --out."
            )
        return
    if not uri.startswith(_SCHEMES):
        hint = (
            f" Did you mean models:/{uri}?"
            if "@" in uri or uri.count("/") == 1
            else " Example: models:/odin-resnet20@champion."
        )
        raise ModelLoadError(
            "Expected a model folder or an MLflow model URI (models:/NAME@ALIAS, "
            f"models:/NAME/VERSION, runs:/RUN_ID/NAME), but got {uri!r}: no such folder, and "
            f"no scheme.{hint}"
        )
    if uri.startswith(("models:/", "runs:/")):
        _check_store(tracking_uri)
    if uri.startswith("models:/"):
        _check_registered(uri, tracking_uri)

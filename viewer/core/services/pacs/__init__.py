"""PACS connectivity: DIMSE (pynetdicom) and DICOMweb (dicomweb-client) against the hospital's nodes.

``nodes`` (configuration), ``query`` (what a search asks and returns), ``dimse`` (C-ECHO, C-FIND,
C-MOVE, C-GET), ``dicomweb`` (QIDO-RS, WADO-RS, STOW-RS), ``scp`` (Casebook's storage SCP),
``storage`` (the received folder and retrieve manifests), ``retrieve`` (a study into the library,
whole or not at all), ``service`` (the front door: echo, search, priors, the push listener).
"""
from __future__ import annotations

from .errors import NodeConfigError, PacsError, RetrieveIncomplete
from .nodes import Node, PacsConfig, load_config, load_nodes, nodes_file, save_nodes
from .query import RemoteSeries, RemoteStudy, StudyQuery, parse_date_arg
from .retrieve import METHODS, RetrieveResult, retrieve_study
from .scp import StorageSCP, server_tls_context
from .service import PushListener, echo, mark_local, query_priors, search
from .storage import Manifest, incomplete_retrieves

__all__ = ["METHODS", "Manifest", "Node", "NodeConfigError", "PacsConfig", "PacsError", "PushListener",
           "RemoteSeries", "RemoteStudy", "RetrieveIncomplete", "RetrieveResult", "StorageSCP", "StudyQuery",
           "echo", "incomplete_retrieves", "load_config", "load_nodes", "mark_local", "nodes_file",
           "parse_date_arg", "query_priors", "retrieve_study", "save_nodes", "search", "server_tls_context"]

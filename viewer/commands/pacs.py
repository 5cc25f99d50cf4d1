"""``casebook pacs echo|find|get|move|scp|nodes``: DIMSE against the hospital's PACS."""
from __future__ import annotations

import argparse

from ._pacs_common import add_query_options, add_retrieve_options, print_studies, query_from, run_retrieve
from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pacs", help="DICOM networking with a PACS: echo, find, move, get, run the storage SCP",
        description="Talk to the PACS nodes of the nodes file (pacs-nodes.toml beside settings.toml; see the "
                    "README's PACS section). `find` searches at study level (and series with --series), "
                    "`move` asks the node to send a study to Casebook's storage SCP (which the node must "
                    "know as a DICOM modality), `get` fetches it over the same association, `scp` listens "
                    "for pushed studies. Retrieved and pushed images are ingested, embedded and indexed; a "
                    "study that did not arrive whole is kept aside and finished by the next retrieve.")
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    e = sub.add_parser("echo", help="C-ECHO a node (is it up, does it accept Casebook?)")
    e.add_argument("--node", help="node name (default: the first DIMSE node)")
    add_query_options(sub.add_parser("find", help="C-FIND studies (and series) at a node"))
    add_retrieve_options(sub.add_parser("move", help="C-MOVE a study into the library through Casebook's SCP"))
    add_retrieve_options(sub.add_parser("get", help="C-GET a study into the library (no listening port needed)"))
    s = sub.add_parser("scp", help="run the storage SCP: studies pushed to Casebook are added to the library",
                       description="Listen on pacs.scp_bind:pacs.scp_port as pacs.ae_title until Ctrl-C, "
                                   "accepting calling AE titles of the configured DIMSE nodes and "
                                   "pacs.scp_allowed_aets only.")
    s.add_argument("--port", type=int, default=None, help="port (default: setting pacs.scp_port)")
    s.add_argument("--bind", default=None, help="interface (default: setting pacs.scp_bind)")
    s.add_argument("--no-embed", action="store_true", help="store pushed images without embedding them")
    sub.add_parser("nodes", help="list the configured nodes and Casebook's own AE title")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    from ..core.config import load_settings
    from ..core.services import pacs

    settings = load_settings()
    action = args.pacs_command
    if action == "echo":
        cfg = pacs.load_config(settings)
        node = cfg.node(args.node, kind="dimse")
        secs = pacs.echo(settings, node.name, cfg=cfg)
        print(f"{node.name} ({node.where()}): C-ECHO ok in {secs * 1000:.0f} ms as {cfg.local.ae_title}")
        return 0
    if action == "find":
        cfg = pacs.load_config(settings)
        node = cfg.node(args.node, kind="dimse")
        studies = pacs.search(settings, query_from(args), node.name, cancel=args.cancel, cfg=cfg)
        series = {}
        if args.series:
            from ..core.services.pacs import dimse

            series = {s.study_uid: dimse.find_series(cfg, node, s.study_uid, cancel=args.cancel) for s in studies}
        print_studies(studies, series, args.json)
        return 0
    if action in ("move", "get"):
        cfg = pacs.load_config(settings)
        args.node = cfg.node(args.node, kind="dimse").name
        return run_retrieve(args, action)
    if action == "scp":
        return _scp(args, settings)
    return _nodes(settings)


def _scp(args: argparse.Namespace, settings) -> int:  # noqa: ANN001
    from ..core.services import pacs

    if args.port is not None:
        settings.pacs.scp_port = args.port
    if args.bind is not None:
        settings.pacs.scp_bind = args.bind

    def said(headline: str, problem: str) -> None:
        print(problem or headline, flush=True)

    with pacs.PushListener(settings, embed=not args.no_embed, on_ingested=said) as listener:
        cfg = listener.cfg
        tls = " (DICOM TLS)" if listener.scp.ssl_context is not None else ""
        print(f"storage SCP {cfg.local.ae_title} on {cfg.local.scp_bind}:{listener.scp.port}{tls}, accepting "
              f"{', '.join(cfg.allowed_calling_aets())}; Ctrl-C stops", flush=True)
        while not args.cancel.wait(0.5):
            pass
        listener.wait_idle()
    print(f"stopped: {listener.scp.stored} images received, {listener.ingested_studies} pushed studies ingested")
    return 0


def _nodes(settings) -> int:  # noqa: ANN001
    from ..core.services import pacs

    cfg = pacs.load_config(settings)
    print(f"Casebook: AE title {cfg.local.ae_title}, storage SCP {cfg.local.scp_bind}:{cfg.local.scp_port} "
          f"({'on' if cfg.local.scp_enabled else 'off'} at start), nodes file {cfg.path}")
    if cfg.nodes:
        print_table(["name", "kind", "where", "auth"], [[n.name, n.kind, n.where(), n.auth if not n.is_dimse else ""]
                                                        for n in cfg.nodes])
    else:
        print("no nodes configured")
    return 0

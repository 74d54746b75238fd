"""The `laneguard` command: one entry point, a subcommand group per package.

Each group is imported only when it is used, so `laneguard --help` needs the base install alone
and `laneguard node ...` never loads the trainer's torch and ultralytics.
"""

from __future__ import annotations

import importlib

import click

# name -> (module:attribute, one-line help shown by `laneguard --help` without importing it)
LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "catalog": (
        "product_db.cli:catalog",
        "Product catalog: import price files, export, list and look up products.",
    ),
    "sim": (
        "simulator.cli:sim",
        "Simulated checkout: scenarios with ground truth, training data, a live lane feed.",
    ),
    "node": (
        "checkout_node.cli:node",
        "Lane computer: watch the lane camera, count and recognise items, replay recordings.",
    ),
    "server": (
        "store_server.cli:server",
        "Store server: the service lanes report to and the manager's web console.",
    ),
    "hq": (
        "hq_server.cli:hq",
        "Chain HQ: enrol stores, pool what they learn, release one model to all of them.",
    ),
    "train": (
        "trainer.cli:train",
        "Train the detector and product recognition models; make the bootstrap bundle.",
    ),
    "eval": (
        "harness.cli:evaluate",
        "Measure recognition accuracy (and lanes) against known answers.",
    ),
    "bench": (
        "harness.cli:bench",
        "Benchmarks: measure speed targets and write JSON and markdown results.",
    ),
    "keys": (
        "laneguard.keys_cli:keys",
        "Signing keys for model bundles: make keys, sign a bundle, verify one.",
    ),
    "demo": (
        "harness.cli:demo",
        "Run the demo store on this computer and print the address to open.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands live in other packages and load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_GROUPS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS:
            target = LAZY_GROUPS[cmd_name][0]
            module_name, attribute = target.split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise click.ClickException(
                    f"'laneguard {cmd_name}' needs packages that are not installed ({exc.name}). "
                    "Install them with: pip install 'laneguard[all]'"
                ) from exc
            command = getattr(module, attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, LAZY_GROUPS[name][1]) for name in sorted(LAZY_GROUPS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="laneguard")
def main() -> None:
    """LaneGuard: checkout loss prevention.

    A camera over each checkout lane recognises the products that pass and compares them with
    what was scanned. Run `laneguard COMMAND --help` for the options of each command.
    """


if __name__ == "__main__":
    main()

"""Simulation runs: batches of customers per posterior draw, written as partitioned parquet with a manifest.

Layout of an output folder::

    simulation.json                   what was asked (seed, draws, customers, mode, prices, batch size, ...)
    transactions/draw-D/part-BBBBB.parquet   one file per (draw, batch), written atomically (with a draw column)
    calendar/draw-D.parquet           each draw's promoted product-weeks, written when its batches are done
    promo_weeks.parquet               all draws' promoted product-weeks (display / mailer), with ``draw``

A rerun with the same arguments skips the batches already written (a batch
file exists only once complete), so an interrupted run resumes; a rerun with
other arguments into the same folder is refused. Customers' random streams
are keyed by their global index, so the lines do not depend on the batch size
(which only names the files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bayes_retail._io import atomic_path, write_json, write_parquet
from bayes_retail._version import __version__
from bayes_retail.errors import ArtifactError
from bayes_retail.simulate.engine import Batch, choice_tables, simulate_batch
from bayes_retail.simulate.inputs import Catalogue, PriceGrid, StageDraw
from bayes_retail.simulate.population import Templates, assemble_customers

MANIFEST_FILENAME = "simulation.json"  # not manifest.json: that names a panels folder
TRANSACTIONS_FOLDER = "transactions"
PROMO_WEEKS_FILENAME = "promo_weeks.parquet"
CALENDAR_FOLDER = "calendar"
#: Columns of the synthetic transactions, in order: the data's internal schema, then the simulator's extras.
TRANSACTION_COLUMNS = (
    "household_id", "store_id", "basket_id", "product_id", "quantity", "sales_value", "retail_disc",
    "coupon_disc", "coupon_match_disc", "week", "base_price", "depth", "display", "mailer", "customer", "draw",
)
MODES = ("new", "population", "replay")
DEFAULT_PROMOTION_TIMING = "seasonal"  # with HMM prices; docs/simulate.md, "When a category is promoted"
#: The longest horizon a run simulates (basket ids hold the week in 10 bits).
MAX_WEEKS = 1023


@dataclass(frozen=True)
class SimulationSpec:
    """What a run simulates (stored in the manifest; a resumed run must ask for the same).

    Attributes
    ----------
    customers
        Customers per draw (``replay``: at most the number of fitted households).
    draws
        Posterior draw indices, one synthetic panel per draw.
    mode
        ``new`` (Bayesian bootstrap of the fitted households), ``population`` (each parameter drawn from its
        stage's population distribution) or ``replay`` (the fitted households themselves).
    prices
        ``hmm`` (a price path per draw from the pricing HMMs) or ``observed`` (the data's prices; draw d uses
        imputed depth panel d mod M).
    seed
        The run's seed.
    batch_size
        Customers per batch (memory and file size; the lines do not depend on it).
    weeks
        Simulated weeks from the data's first (``None``: the data's weeks). More
        weeks than the data hold repeat the seasons (:func:`~bayes_retail.simulate.world.horizon_positions`)
        and need HMM prices.
    promotion_timing
        With HMM prices: ``seasonal`` (the default: promotion paths tilted
        toward each category's observed weekly promotion share, with the fitted
        calendar path; :mod:`bayes_retail.pricing.timing`) or ``homogeneous``
        (the HMMs' own timing and a drawn calendar path). Seasonal since the
        category stage's seasonal scales per category put seasonal categories'
        purchases in season: over four seeds it raised the overall score by
        0.0015 and cut promo_response's KS from 0.204 to 0.181 (docs/simulate.md).
    """

    customers: int
    draws: tuple[int, ...]
    mode: str = "new"
    prices: str = "hmm"
    seed: int = 0
    batch_size: int = 1000
    weeks: int | None = None
    promotion_timing: str = DEFAULT_PROMOTION_TIMING

    def __post_init__(self) -> None:
        for name in ("customers", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not self.draws or any(int(d) < 0 for d in self.draws):
            raise ValueError(f"draws must be non-negative indices, got {self.draws!r}")
        object.__setattr__(self, "draws", tuple(int(d) for d in self.draws))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.prices not in ("hmm", "observed"):
            raise ValueError(f"prices must be 'hmm' or 'observed', got {self.prices!r}")
        if self.weeks is not None and (isinstance(self.weeks, bool) or not isinstance(self.weeks, (int, np.integer))
                                       or not 1 <= self.weeks <= MAX_WEEKS):
            raise ValueError(f"weeks must be an integer from 1 to {MAX_WEEKS}, got {self.weeks!r}")
        from bayes_retail.simulate.world import PROMOTION_TIMINGS

        if self.promotion_timing not in PROMOTION_TIMINGS:
            raise ValueError(f"promotion_timing must be one of {PROMOTION_TIMINGS}, got {self.promotion_timing!r}")

    def batches(self) -> list[np.ndarray]:
        """Global customer indices of each batch."""
        return [np.arange(s, min(s + self.batch_size, self.customers)) for s in range(0, self.customers, self.batch_size)]


@dataclass(frozen=True)
class DrawWorld:
    """What every batch of one posterior draw shares.

    Attributes
    ----------
    index
        The posterior draw.
    draw, templates, prices
        Its population values, template households and prices.
    tables
        :func:`~bayes_retail.simulate.engine.choice_tables` of ``draw`` and ``prices``.
    intensity, signal_sd
        ``(C, W)`` promotion intensity of the prices and the visit stage's signal scale.
    entry_weeks
        Observed entry-week positions of all households (new customers' entries are drawn from them).
    week_numbers
        ``(W,)`` the week numbers behind the positions.
    """

    index: int
    draw: StageDraw
    templates: Templates
    prices: PriceGrid
    tables: tuple[np.ndarray, np.ndarray]
    intensity: np.ndarray
    signal_sd: float
    entry_weeks: np.ndarray
    week_numbers: np.ndarray


def promo_intensity(prices: PriceGrid, catalogue: Catalogue) -> np.ndarray:
    """``(C, W)`` share of each category's choice-set products on display or in the mailer (the visit stage's definition)."""
    real = np.flatnonzero(catalogue.item_product >= 0)
    rows = catalogue.item_product[real]
    on = (prices.display[rows] > 0) | (prices.mailer[rows] > 0)
    category = catalogue.item_category[real]
    counts = np.bincount(category, minlength=catalogue.n_categories)
    out = np.zeros((catalogue.n_categories, prices.n_weeks))
    np.add.at(out, category, on.astype(float))
    return out / np.maximum(counts, 1)[:, None]


def draw_world(
    index: int, draw: StageDraw, templates: Templates, prices: PriceGrid, catalogue: Catalogue, *,
    signal_sd: float, entry_weeks: np.ndarray, week_numbers: np.ndarray,
) -> DrawWorld:
    """A :class:`DrawWorld`, computing what depends on the draw and prices once."""
    return DrawWorld(
        index=index, draw=draw, templates=templates, prices=prices, tables=choice_tables(draw, catalogue, prices),
        intensity=promo_intensity(prices, catalogue), signal_sd=signal_sd, entry_weeks=np.asarray(entry_weeks),
        week_numbers=np.asarray(week_numbers),
    )


def basket_ids(draw: int, customer: np.ndarray, week: np.ndarray, trip: np.ndarray) -> np.ndarray:
    """Unique basket ids: ``((draw * 2^30 + customer) * 1024 + week) * 64 + trip``.

    Customers < 2^30, week positions < 1024 (:data:`MAX_WEEKS`), trips < 64, draws < 2^17.
    """
    return ((np.int64(draw) * 2**30 + customer.astype(np.int64)) * 1024 + week) * 64 + trip


def transactions_table(batch: Batch, world: DrawWorld, catalogue: Catalogue, store_id: np.ndarray) -> pa.Table:
    """The batch's lines in the data's transactions schema plus prices, promotions, customer and draw.

    ``store_id`` is per line (the customer's template's store). An Arrow
    table: it goes to parquet without pandas' block consolidation.
    """
    lines = batch.line_columns
    product, week, quantity = lines["product"], lines["week"], lines["quantity"]
    shelf, depth = world.prices.shelf[product, week], world.prices.depth[product, week]
    n = product.size
    columns = {
        "household_id": lines["household_id"].astype(np.int64),
        "store_id": np.asarray(store_id, dtype=np.int64),
        "basket_id": basket_ids(world.index, lines["customer"], week, lines["trip"]),
        "product_id": catalogue.product_ids[product].astype(np.int64),
        "quantity": quantity.astype(np.int64),
        "sales_value": np.round(quantity * shelf * (1.0 - depth), 2),
        "retail_disc": np.round(quantity * shelf * depth, 2),
        "coupon_disc": np.zeros(n),
        "coupon_match_disc": np.zeros(n),
        "week": world.week_numbers[week].astype(np.int64),
        "base_price": shelf,
        "depth": depth,
        "display": world.prices.display[product, week] > 0,
        "mailer": world.prices.mailer[product, week] > 0,
        "customer": lines["customer"].astype(np.int64),
        "draw": np.full(n, world.index, dtype=np.int64),
    }
    return pa.table({name: columns[name] for name in TRANSACTION_COLUMNS})


def simulate_table(world: DrawWorld, catalogue: Catalogue, customers: np.ndarray, spec: SimulationSpec) -> pa.Table:
    """The transactions of the given customers (global indices) under one draw, as an Arrow table."""
    batch_customers, rows = assemble_customers(
        world.templates, customers, mode=spec.mode, seed=spec.seed, draw=world.index,
        intensity=world.intensity, signal_sd=world.signal_sd, entry_weeks=world.entry_weeks,
    )
    batch = simulate_batch(
        world.draw, batch_customers, catalogue, world.prices, seed=spec.seed, draw_index=world.index, tables=world.tables
    )
    position = np.searchsorted(batch_customers.index, batch.line_columns["customer"])
    return transactions_table(batch, world, catalogue, world.templates.store_id[rows][position])


def simulate_customers(world: DrawWorld, catalogue: Catalogue, customers: np.ndarray, spec: SimulationSpec) -> pd.DataFrame:
    """:func:`simulate_table` as a pandas DataFrame."""
    return simulate_table(world, catalogue, customers, spec).to_pandas()


def promo_weeks_table(world: DrawWorld, catalogue: Catalogue) -> pd.DataFrame:
    """Promoted product-weeks (display or mailer) of one draw's prices."""
    p, w = np.nonzero((world.prices.display > 0) | (world.prices.mailer > 0))
    return pd.DataFrame({
        "product_id": catalogue.product_ids[p].astype(np.int64),
        "week": world.week_numbers[w].astype(np.int64),
        "display": world.prices.display[p, w] > 0,
        "mailer": world.prices.mailer[p, w] > 0,
        "draw": np.int64(world.index),
    })


def part_path(out: Path, draw: int, batch: int) -> Path:
    return out / TRANSACTIONS_FOLDER / f"draw-{draw}" / f"part-{batch:05d}.parquet"


def calendar_path(out: Path, draw: int) -> Path:
    return out / CALENDAR_FOLDER / f"draw-{draw}.parquet"


def _check_manifest(out: Path, manifest: dict) -> None:
    path = out / MANIFEST_FILENAME
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"unreadable manifest ({exc}): choose another output folder", file=str(path)) from exc
        if old.get("spec") != manifest["spec"] or old.get("provenance") != manifest["provenance"]:
            raise ArtifactError(
                "this folder holds a simulation with other arguments or posteriors: choose another output folder",
                file=str(path),
            )
    elif out.exists() and any(out.iterdir()):
        raise ArtifactError("the output folder is not empty and holds no simulation manifest", file=str(out))


def _write_batch(world: DrawWorld, catalogue: Catalogue, customers: np.ndarray, spec: SimulationSpec, path: str) -> str:
    """Simulate one batch and write its file atomically (what a Dask worker runs)."""
    with atomic_path(path) as tmp:
        pq.write_table(simulate_table(world, catalogue, customers, spec), tmp)
    return path


@contextlib.contextmanager
def dask_client(scheduler: str | None):
    """``None``: no client (in-process); ``"local"``: a LocalCluster of one single-threaded worker per core;
    otherwise the address of a running scheduler."""
    if scheduler is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # an optional dependency
        raise ValueError("--scheduler needs dask.distributed: pip install 'bayes_retail[dist]'") from exc
    if scheduler == "local":
        with LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
    else:
        with Client(scheduler) as client:
            yield client


def _batches_with_dask(client, world, catalogue, spec, out, d, todo, batches, bar) -> None:
    from dask.distributed import as_completed

    # every worker gets the draw's shared tables once, not once per batch; random keys (hash=False): a key
    # derived from the content would be shared with the previous draw's catalogue while it is being released
    world_future, catalogue_future = client.scatter([world, catalogue], broadcast=True, hash=False)
    futures = [
        client.submit(_write_batch, world_future, catalogue_future, batches[b], spec, str(part_path(out, d, b)), pure=False)
        for b in todo
    ]
    for future in as_completed(futures):
        future.result()
        bar.update(1)


def run_simulation(
    worlds: Callable[[int], DrawWorld],
    catalogue: Catalogue,
    spec: SimulationSpec,
    out: str | os.PathLike,
    *,
    provenance: dict | None = None,
    progress: bool = False,
    scheduler: str | None = None,
    on_draw: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Simulate ``spec`` into ``out`` (resuming a run with the same arguments) and return the manifest.

    Parameters
    ----------
    worlds
        Builds the :class:`DrawWorld` of a posterior draw (called once per draw with work left).
    catalogue
        The catalogue the worlds' indices refer to.
    spec
        What to simulate.
    out
        Output folder (created; must be empty or hold a run of the same ``spec`` and ``provenance``).
    provenance
        JSON-able facts the manifest records and a resumed run must match (trace hashes, data hash, config).
    progress
        Show a progress bar over batches.
    scheduler
        ``None`` runs the batches in this process; ``"local"`` on a Dask
        LocalCluster; an address on a running Dask scheduler. The files are the
        same whichever runs them.
    on_draw
        Called with each draw once its files are complete (in ``spec.draws``
        order; finished draws of a resumed run included), e.g. to score a draw
        while the next one is simulated. An exception it raises stops the run.
    threads
        In-process batches of a draw run this many at a time (the kernels and
        the parquet writer release the GIL); default: one per core. The files
        are the same for any number.
    """
    from tqdm import tqdm

    threads = batch_threads(threads)
    out = Path(out)
    manifest = {
        "kind": "bayes_retail simulation",
        "bayes_retail_version": __version__,
        "spec": json.loads(json.dumps(asdict(spec))),
        "provenance": json.loads(json.dumps(provenance or {}, default=str)),
    }
    _check_manifest(out, manifest)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ArtifactError(f"cannot write the output folder ({exc.strerror or exc})", file=str(out)) from exc
    write_json({**manifest, "complete": False}, out / MANIFEST_FILENAME)
    batches = spec.batches()
    with dask_client(scheduler) as client, \
            tqdm(total=len(spec.draws) * len(batches), disable=not progress, unit="batch", desc="simulate") as bar:
        for d in spec.draws:
            todo = [b for b in range(len(batches)) if not part_path(out, d, b).exists()]
            bar.update(len(batches) - len(todo))
            if todo or not calendar_path(out, d).exists():
                _simulate_draw(worlds(d), catalogue, spec, out, d, todo, batches, client, bar, threads)
            if on_draw is not None:
                on_draw(d)
    calendars = [pd.read_parquet(calendar_path(out, d)) for d in spec.draws]
    write_parquet(pd.concat(calendars, ignore_index=True), out / PROMO_WEEKS_FILENAME)
    lines = sum(pq.ParquetFile(part_path(out, d, b)).metadata.num_rows for d in spec.draws for b in range(len(batches)))
    manifest.update(complete=True, lines=int(lines))
    write_json(manifest, out / MANIFEST_FILENAME)
    return manifest


def batch_threads(threads: int | None) -> int:
    """How many batches run at a time in this process: ``threads``, or one per core when ``None``."""
    threads = (os.cpu_count() or 1) if threads is None else threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


def _simulate_draw(world: DrawWorld, catalogue: Catalogue, spec: SimulationSpec, out: Path, d: int, todo: list[int],
                   batches: list[np.ndarray], client, bar, threads: int = 1) -> None:
    """Write draw ``d``'s unfinished batches and its promotion calendar (the world is released on return)."""
    if client is None:
        def write(b: int) -> None:
            _write_batch(world, catalogue, batches[b], spec, str(part_path(out, d, b)))
            bar.update(1)

        if threads == 1 or len(todo) == 1:
            for b in todo:
                write(b)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(todo))) as pool:
                list(pool.map(write, todo))  # raises the first batch error, after the running batches finish
    else:
        _batches_with_dask(client, world, catalogue, spec, out, d, todo, batches, bar)
    write_parquet(promo_weeks_table(world, catalogue), calendar_path(out, d))


def _trace_hashes(folder: Path) -> dict[str, str | None]:
    """Digest of each stage's artifact files (``None`` when a stage folder is missing)."""
    from bayes_retail._io import hash_files
    from bayes_retail.simulate.population import STAGES

    out = {}
    for stage in (*STAGES, "pricing"):
        files = sorted(p for p in (folder / stage).glob("*") if p.is_file()) if (folder / stage).is_dir() else []
        out[stage] = hash_files(files) if files else None
    return out


def posterior_worlds(
    posteriors, data, catalogue: Catalogue, *, seed: int, prices: str, pricing_model=None, depth_panels=None,
    policy=None, mode: str = "new", weeks: int | None = None, promotion_timing: str = DEFAULT_PROMOTION_TIMING,
    trip_weight_sd: float | None = None,
) -> Callable[[int], DrawWorld]:
    """Build each draw's :class:`DrawWorld` from fitted posteriors and the data they were fitted on.

    ``prices="hmm"`` draws one price path per posterior draw from ``pricing_model``
    (its own stream, so the path does not depend on the batches);
    ``"observed"`` uses the data's prices with imputed depth panel ``draw mod M``
    of ``depth_panels`` (``(M, T, N)``): the imputations are pooled over draws.
    With ``depth_panels`` given, each draw's product classes follow that draw
    (:func:`~bayes_retail.simulate.population.draw_class_membership` on the
    panel the product stage was fitted with, the first); without, the
    membership averaged over draws is used.
    ``policy`` (:mod:`~bayes_retail.simulate.policy`) overrides promotions on top of either.
    ``mode="population"`` with a household-coefficient product fit replaces the
    fitted households' coefficient vectors by as many drawn from the draw's
    population law (:func:`~bayes_retail.simulate.population.population_coefficients`).
    ``weeks`` simulates that many weeks from the data's first: fewer are a
    prefix of the data's; more repeat the seasons (week effects, seasonal
    indices, shelf availability of the week 52 before) under HMM prices.
    ``promotion_timing``: see :class:`SimulationSpec` (the tilt is solved once, here).
    ``trip_weight_sd``: log sd of a week's trip sizes; ``None`` estimates it from
    the data's two-trip weeks (:func:`~bayes_retail.simulate.trips.trip_weight_sd`), 0 makes trips alike.
    """
    from bayes_retail.models import visit
    from bayes_retail.simulate.policy import apply_policy
    from bayes_retail.models import product
    from bayes_retail.simulate.population import (
        DRAW_COEFFICIENTS,
        DRAW_PRICES,
        draw_class_membership,
        population_coefficients,
        draw_rng,
        modal_stores,
        product_stage_data,
        stage_draw,
        template_ids,
        templates,
    )
    from bayes_retail.simulate.trips import trip_weight_sd as estimate_trip_weight_sd
    from bayes_retail.simulate.world import (
        hmm_prices,
        horizon_positions,
        observed_prices,
        price_basis,
        seasonal_timing,
    )

    if prices == "hmm" and pricing_model is None:
        raise ValueError("HMM prices need the fitted pricing model")
    if prices == "observed" and depth_panels is None:
        raise ValueError("observed prices need the imputed depth panels")
    config = json.loads(posteriors.visit.attrs.get("stage_config", "{}"))
    vd = visit.build_visit_data(data, visit.VisitConfig(**config))
    positions = None if weeks is None else horizon_positions(vd.weeks.size, weeks)
    if positions is not None and prices == "observed" and weeks > vd.weeks.size:
        raise ValueError(f"observed prices cover the data's {vd.weeks.size} weeks; asked for {weeks} "
                         "(simulate more weeks with HMM prices)")
    week_numbers = vd.weeks if positions is None else vd.weeks[0] + np.arange(weeks)
    stores = modal_stores(data.transactions)
    if trip_weight_sd is None:
        trip_weight_sd = estimate_trip_weight_sd(data.transactions, data.choice_sets)
    entry_weeks = np.searchsorted(vd.weeks, vd.entry_week)
    product_config = product.fitted_config(posteriors.product.attrs)
    # shared by every draw's prices
    basis = price_basis(data, catalogue, availability=product_config.availability,
                        depth=None if depth_panels is None else depth_panels[0])
    seasonal = (seasonal_timing(basis, pricing_model, positions)
                if prices == "hmm" and promotion_timing == "seasonal" else None)
    membership = None
    if depth_panels is not None:  # the product stage's data: each draw's class membership follows the draw
        product_data = product_stage_data(posteriors, data, depth_panels[0])
        inputs = product.kernel_inputs(product_data)
        ids = template_ids(posteriors)

        def draw_membership(d):
            return draw_class_membership(posteriors, product_data, d, ids, inputs=inputs)

        membership = draw_membership

    def build(d: int) -> DrawWorld:
        rng = draw_rng(seed, d, DRAW_PRICES)
        if prices == "hmm":
            grid = hmm_prices(basis, pricing_model, rng, positions=positions, seasonal=seasonal)
        else:
            grid = observed_prices(basis, depth_panels[d % len(depth_panels)], rng)
            grid = grid if positions is None else grid.at_weeks(positions)
        if policy is not None:
            grid = apply_policy(grid, catalogue, week_numbers, policy)
        klass = membership(d) if membership is not None else None
        draw = dataclasses.replace(stage_draw(posteriors, catalogue, d), trip_weight_sd=trip_weight_sd)
        if mode == "population" and "theta_household" in posteriors.product:
            coefficients = population_coefficients(posteriors.product, d, draw.class_coefficients.shape[0],
                                                   draw_rng(seed, d, DRAW_COEFFICIENTS))
            draw = dataclasses.replace(draw, class_coefficients=coefficients)
        if "k" in posteriors.category:
            draw = with_category_value(draw, posteriors, d, catalogue, basis, depth_panels)
        if positions is not None:
            draw = draw.at_weeks(positions)
        return draw_world(
            d, draw, templates(posteriors, vd, d, stores=stores, class_probabilities=klass),
            grid, catalogue, signal_sd=vd.signal_sd, entry_weeks=entry_weeks, week_numbers=week_numbers,
        )

    return build


def with_category_value(draw: StageDraw, posteriors, index: int, catalogue: Catalogue, basis, depth_panels) -> StageDraw:
    """``draw`` with the category stage's value response ``k`` and the centre of its values under the observed prices.

    The centre uses the imputed depth panel the product and category stages
    were fitted with (the first).
    """
    from bayes_retail.simulate.engine import fitted_category_value_centre
    from bayes_retail.simulate.population import category_value_response
    from bayes_retail.simulate.world import observed_prices

    if depth_panels is None:
        raise ValueError("a category stage with a category value needs the imputed depth panels (observed prices)")
    # the tail products' discounted weeks (the only random part) do not enter the values
    observed = observed_prices(basis, depth_panels[0], np.random.default_rng(0))
    return dataclasses.replace(
        draw, category_value_response=category_value_response(posteriors, index),
        category_value_centre=fitted_category_value_centre(draw, catalogue, observed),
    )


def _folder_worlds(posterior, data, *, customers, draws, mode, prices, seed, batch_size, policy=None, weeks=None,
                   promotion_timing=DEFAULT_PROMOTION_TIMING):
    """Load a folder's artifacts; return the spec, catalogue, world builder and provenance of a run."""
    from bayes_retail.models.artifacts import evenly_spaced
    from bayes_retail.pricing.artifacts import load_imputations, load_pricing
    from bayes_retail.pricing.model import PricingPanel
    from bayes_retail.models.product import fitted_config
    from bayes_retail.simulate.population import STAGES, Posteriors, template_ids
    from bayes_retail.simulate.world import catalogue_from_data

    folder = Path(posterior)
    posteriors = Posteriors.load(folder, data_hash=data.data_hash)
    available = posteriors.n_draws
    if isinstance(draws, (int, np.integer)):
        if not 1 <= draws <= available:
            raise ValueError(f"draws must be between 1 and the {available} stored posterior draws, got {draws}")
        draws = tuple(int(d) for d in evenly_spaced(available, int(draws)))
    spec = SimulationSpec(customers=customers, draws=tuple(draws), mode=mode, prices=prices, seed=seed,
                          batch_size=batch_size, weeks=weeks, promotion_timing=promotion_timing)
    if max(spec.draws) >= available:
        raise ValueError(f"the posteriors hold {available} draws; asked for draw {max(spec.draws)}")
    n_templates = template_ids(posteriors).size
    if spec.mode == "replay" and spec.customers > n_templates:
        raise ValueError(f"replay simulates the {n_templates} households fitted in every stage; asked for {spec.customers}")
    catalogue = catalogue_from_data(data, deal_frequency=fitted_config(posteriors.product.attrs).deal_frequency)
    data_weeks = np.asarray(data.weeks)
    _check_policy(policy, catalogue, data_weeks if weeks is None else data_weeks[0] + np.arange(weeks))
    pricing_model = load_pricing(folder / "pricing") if spec.prices == "hmm" else None
    # the imputed depths: observed prices use panel d mod M; the product stage's data (class membership) panel 0
    depth_panels = load_imputations(folder / "pricing", PricingPanel.from_product_weeks(data.product_weeks))
    worlds = posterior_worlds(
        posteriors, data, catalogue, seed=spec.seed, prices=spec.prices, pricing_model=pricing_model,
        depth_panels=depth_panels, policy=policy, mode=spec.mode, weeks=spec.weeks,
        promotion_timing=spec.promotion_timing,
    )
    provenance = {"data_hash": data.data_hash, "posterior": str(folder.resolve()), "traces": _trace_hashes(folder),
                  "configs": {stage: getattr(posteriors, stage).attrs.get("config_name") for stage in STAGES},
                  "policy": _policy_digest(policy)}
    return spec, catalogue, worlds, provenance


def _check_policy(policy, catalogue: Catalogue, weeks: np.ndarray) -> None:
    """Check a policy table's products, weeks and values before anything is simulated or written."""
    if policy is None or callable(policy):
        return
    from bayes_retail.simulate.policy import apply_policy
    from bayes_retail.simulate.synthetic import placeholder_prices

    apply_policy(placeholder_prices(catalogue, weeks), catalogue, weeks, policy)


def _policy_digest(policy) -> str | None:
    import hashlib

    if policy is None:
        return None
    if callable(policy):
        return f"callable {getattr(policy, '__module__', '?')}.{getattr(policy, '__qualname__', repr(policy))}"
    return hashlib.blake2b(pd.DataFrame(policy).to_csv(index=False).encode(), digest_size=16).hexdigest()


def simulate_from_folder(
    posterior: str | os.PathLike,
    data,
    out: str | os.PathLike,
    *,
    customers: int,
    draws: int | tuple[int, ...] = 1,
    mode: str = "new",
    prices: str = "hmm",
    seed: int = 0,
    batch_size: int = 1000,
    policy=None,
    progress: bool = False,
    scheduler: str | None = None,
    weeks: int | None = None,
    promotion_timing: str = DEFAULT_PROMOTION_TIMING,
    on_draw: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Simulate from the fitted artifacts in ``posterior`` (the four shopper stages and pricing) into ``out``.

    ``draws`` is a number of posterior draws (evenly spaced over the stored
    draws) or explicit draw indices. Every trace must have been fitted on
    ``data`` (checked by data hash). ``policy`` overrides promotions
    (:mod:`~bayes_retail.simulate.policy`). ``scheduler``: see :func:`run_simulation`.
    ``weeks``, ``promotion_timing``: see :class:`SimulationSpec`. ``on_draw``, ``threads``: see
    :func:`run_simulation`. Returns the manifest.
    """
    spec, catalogue, worlds, provenance = _folder_worlds(
        posterior, data, customers=customers, draws=draws, mode=mode, prices=prices, seed=seed,
        batch_size=batch_size, policy=policy, weeks=weeks, promotion_timing=promotion_timing,
    )
    return run_simulation(worlds, catalogue, spec, out, provenance=provenance, progress=progress, scheduler=scheduler,
                          on_draw=on_draw, threads=threads)


def with_prices(world: DrawWorld, prices: PriceGrid, catalogue: Catalogue) -> DrawWorld:
    """The same draw under other prices (choice tables and promotion intensity recomputed)."""
    return dataclasses.replace(
        world, prices=prices, tables=choice_tables(world.draw, catalogue, prices),
        intensity=promo_intensity(prices, catalogue),
    )


def what_if(
    worlds: Callable[[int], DrawWorld],
    catalogue: Catalogue,
    spec: SimulationSpec,
    policy,
    *,
    prob: float = 0.9,
    progress: bool = False,
    threads: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Revenue, units and visits under ``policy`` against the baseline, over posterior draws.

    Both arms simulate the same customers with the same random streams.
    ``threads`` batches run at a time (default one per core; their totals are
    added in batch order, so the result does not depend on it).
    Returns the summary (:func:`~bayes_retail.simulate.policy.compare_totals`)
    and the per-draw totals.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from bayes_retail.simulate.policy import apply_policy, compare_totals, summarise_totals

    threads = batch_threads(threads)
    rows = []
    batches = spec.batches()
    with tqdm(total=len(spec.draws) * len(batches), disable=not progress, unit="batch", desc="what-if") as bar, \
            ThreadPoolExecutor(threads) as pool:
        for d in spec.draws:
            base = worlds(d)
            alt = with_prices(base, apply_policy(base.prices, catalogue, base.week_numbers, policy), catalogue)

            def batch_totals(customers, base=base, alt=alt):
                out = {arm: summarise_totals(simulate_table(world, catalogue, customers, spec))
                       for arm, world in (("baseline", base), ("policy", alt))}
                bar.update(1)
                return out

            totals = {"baseline": {}, "policy": {}}
            for batch in pool.map(batch_totals, batches):
                for arm, values in batch.items():
                    for metric, value in values.items():
                        totals[arm][metric] = totals[arm].get(metric, 0.0) + value
            rows += [{"draw": d, "metric": m, "baseline": totals["baseline"][m], "policy": totals["policy"][m]}
                     for m in totals["baseline"]]
    per_draw = pd.DataFrame(rows)
    return compare_totals(per_draw, prob=prob), per_draw


def what_if_from_folder(
    posterior: str | os.PathLike, data, policy, *, customers: int, draws: int | tuple[int, ...] = 20,
    mode: str = "new", prices: str = "hmm", seed: int = 0, batch_size: int = 1000, prob: float = 0.9,
    progress: bool = False, threads: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`what_if` with the fitted artifacts in ``posterior`` (see :func:`simulate_from_folder`)."""
    spec, catalogue, worlds, _ = _folder_worlds(
        posterior, data, customers=customers, draws=draws, mode=mode, prices=prices, seed=seed, batch_size=batch_size,
    )
    _check_policy(policy, catalogue, np.asarray(data.weeks))
    return what_if(worlds, catalogue, spec, policy, prob=prob, progress=progress, threads=threads)

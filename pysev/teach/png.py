"""Draw a :class:`~pysev.teach.walk.WalkExplanation` as a PNG, through matplotlib.

The drawing is :func:`pysev.teach.picture.layout`, the same as the SVG's; here
its pixel coordinates become data coordinates of an axes that fills the
figure, with y inverted so that SVG's y-down layout needs no conversion.
matplotlib is imported only when a PNG is asked for: the rest of pysev, the
SVG included, works without it.
"""

from pysev.teach.picture import Arrow, PictureError, Rect, Text, layout

BASE_DPI = 100
# sizes in the layout are pixels, matplotlib's are points (1/72 inch)
PT_PER_PX = 72 / BASE_DPI
ANCHORS = {"start": "left", "middle": "center", "end": "right"}


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib import patches
    except ImportError:
        raise PictureError("PNG output needs matplotlib: "
                           "python3 -m pip install 'pysev[plot]'") from None
    return Figure, FigureCanvasAgg, patches


def _draw(ax, patches, shape):
    if isinstance(shape, Rect):
        style = dict(facecolor=shape.fill if shape.fill != "none" else "none",
                     edgecolor=shape.stroke if shape.stroke != "none" else "none",
                     linewidth=shape.stroke_width * PT_PER_PX)
        if shape.rx:
            ax.add_patch(patches.FancyBboxPatch(
                (shape.x, shape.y), shape.w, shape.h,
                boxstyle=f"round,pad=0,rounding_size={shape.rx}", **style))
        else:
            ax.add_patch(patches.Rectangle((shape.x, shape.y), shape.w, shape.h, **style))
    elif isinstance(shape, Text):
        ax.text(shape.x, shape.y, shape.s, fontsize=shape.size * PT_PER_PX,
                family="monospace", ha=ANCHORS[shape.anchor], va="baseline",
                fontweight=shape.weight, color=shape.fill, parse_math=False)
    elif isinstance(shape, Arrow):
        ax.add_patch(patches.FancyArrowPatch(
            (shape.x1, shape.y1), (shape.x2, shape.y2), arrowstyle="-|>",
            mutation_scale=14 * PT_PER_PX * shape.width / 2, color=shape.stroke,
            linewidth=shape.width * PT_PER_PX, shrinkA=0, shrinkB=0))
    else:
        raise TypeError(f"no PNG for {shape!r}")


def picture_to_png(pic, path_or_file, scale=1):
    """Write :class:`~pysev.teach.picture.Picture` *pic* as a PNG of
    round(width*scale) x round(height*scale) pixels to a path or binary file."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    Figure, FigureCanvasAgg, patches = _matplotlib()
    pw, ph = round(pic.width * scale), round(pic.height * scale)
    dpi = BASE_DPI * scale
    # Agg truncates the figure's size in pixels: a thousandth of a pixel more keeps
    # float error in inches * dpi from losing the last row or column
    fig = Figure(figsize=((pw + 1e-3) / dpi, (ph + 1e-3) / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, pw / scale)
    ax.set_ylim(ph / scale, 0)             # y down, as in the layout and SVG
    for shape in pic.shapes():
        _draw(ax, patches, shape)
    fig.savefig(path_or_file, format="png", dpi=dpi, facecolor="white")


def render_png(expl, path_or_file, scale=1):
    """Draw walk explanation *expl* as a PNG into a path or binary file.

    At scale 1 the PNG has the SVG's size (960 pixels wide); scale 2 doubles it.
    Raises :class:`~pysev.teach.picture.PictureError` when matplotlib is missing,
    OSError when the file cannot be written.
    """
    picture_to_png(layout(expl), path_or_file, scale)

"""MkDocs hook: figures drawn with matplotlib when the site is built.

Each figure is an SVG added to the site's files (nothing is written into docs/),
so pages refer to it as ``figures/NAME.svg`` and it always matches this code.
"""

from __future__ import annotations

import io

from mkdocs.structure.files import File, Files


def data_dims_svg() -> str:
    """Full Jacobian of a batched function next to the ``B + Y + X`` blocks xpdiff computes."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    nb, ny, nx = 3, 2, 4                      # samples, output size, input size per sample
    colours = ["#3f51b5", "#009688", "#ef6c00"]
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "xpdiff", "font.size": 13,
                         "font.family": "sans-serif"})
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6), width_ratios=[1.5, 1])

    def cells(ax, x0, y0, colour):            # one Y x X block, one square per derivative
        for i in range(ny):
            for j in range(nx):
                ax.add_patch(Rectangle((x0 + j, y0 + i), 1, 1, facecolor=colour, alpha=0.85,
                                       edgecolor="white", linewidth=1))

    # left: the Jacobian of y (B*Y values) with respect to x (B*X values)
    for b in range(nb):
        for c in range(nb):
            x0, y0 = c * nx, (nb - 1 - b) * ny
            if b == c:
                cells(left, x0, y0, colours[b])
            else:
                left.add_patch(Rectangle((x0, y0), nx, ny, facecolor="#f2f2f2", hatch="//",
                                         edgecolor="#c8c8c8", linewidth=0.8))
    left.add_patch(Rectangle((0, 0), nb * nx, nb * ny, fill=False, edgecolor="#666666", linewidth=1))
    left.set_xlim(-0.2, nb * nx + 0.2)
    left.set_ylim(-0.2, nb * ny + 0.2)
    left.set_aspect("equal")
    left.set_xticks([nx * (c + 0.5) for c in range(nb)], [f"x[{c}]  (X)" for c in range(nb)])
    left.set_yticks([ny * (nb - b - 0.5) for b in range(nb)], [f"y[{b}]" for b in range(nb)])
    left.tick_params(length=0)
    for side in left.spines.values():
        side.set_visible(False)
    left.set_title("full Jacobian of y (B + Y) w.r.t. x (B + X):\n"
                   "blocks across samples (grey) are zero", fontsize=12)

    # right: the result of jacobian(f, batch_ndim=1): the diagonal blocks, stacked
    for b in range(nb):
        y0 = (nb - 1 - b) * (ny + 0.8)
        cells(right, 0, y0, colours[b])
        right.text(-0.3, y0 + ny / 2, f"J[{b}]", ha="right", va="center")
    right.text(nx / 2, -0.55, "X", ha="center", va="top")
    right.text(nx + 0.3, ny / 2, "Y", ha="left", va="center")
    right.set_xlim(-1.8, nx + 1.0)
    right.set_ylim(-1.3, nb * (ny + 0.8))
    right.set_aspect("equal")
    right.axis("off")
    right.set_title("jacobian(f, batch_ndim=1)(x):\nshape B + Y + X, one block per sample",
                    fontsize=12)

    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


FIGURES = {"figures/data-dims.svg": data_dims_svg}


def on_files(files: Files, config) -> Files:
    for path, draw in FIGURES.items():
        files.append(File.generated(config, path, content=draw()))
    return files

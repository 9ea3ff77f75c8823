//! PNG figures of grokflow results. Rendering reads results and computes nothing new: every
//! number drawn is a field of a result struct. Text uses the DejaVu Sans font shipped in
//! `assets/`, so figures render on machines without system fonts.

mod extra;
mod figure;
mod trajectory;

pub use extra::{
    collapse_figure, function_figure, singular_values_figure, spectrum_figure, FunctionTable,
};
pub use figure::{render, Figure, Legend, Panel, Series, SeriesStyle, VLine, PALETTE};
pub use trajectory::{trajectory_figure, TrajectoryFigure};

use thiserror::Error;

/// Why a figure could not be drawn or written.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The drawing backend failed (e.g. the file could not be written).
    #[error("could not draw {path}: {message}")]
    Draw {
        /// The output file.
        path: String,
        /// The backend's message.
        message: String,
    },
    /// The figure has nothing to draw.
    #[error("nothing to draw in {0}")]
    Empty(String),
}

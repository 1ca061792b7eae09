//! Local folders a workflow moves as a whole: the `move_path` step (an
//! atomic rename, and its undo), used to set a live folder aside and to put
//! a restored one in its place.

pub mod move_path;

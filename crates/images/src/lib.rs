//! The OCI image store of Flotilla's container runtime (node side).
//!
//! Pulls images from OCI/Docker registries (`pull`), imports `docker save` and OCI
//! archives (`import`), keeps a content-addressed blob store with digest verification
//! (`content`), unpacks layers into overlayfs snapshots shared between images
//! (`snapshot`, `unpack`), names images in an atomically written index and collects
//! garbage (`store`). The runtime asks [`ImageStore::rootfs_layers`] for the overlay
//! lower directories and the image config of a container; `flotilla ctr images` uses
//! [`cli`].
//!
//! Layout under the root (`<data-dir>/images`): `blobs/sha256/<hex>`,
//! `snapshots/<chainid hex>/fs`, `index.json`, `tmp/` (same filesystem, for atomic
//! renames).
//!
//! This crate must never depend on the API server, the datastore or the runtime: it
//! knows images, not pods.
//!
//! ```no_run
//! # async fn demo() -> Result<(), images::ImageError> {
//! use std::collections::HashSet;
//! use images::{ImageStore, PullOptions};
//!
//! let store = ImageStore::open("/var/lib/flotilla/images".as_ref())?;
//! let opts = PullOptions {
//!     insecure_registries: vec!["127.0.0.1:5000".into()],
//!     ..Default::default()
//! };
//! let info = store.pull("127.0.0.1:5000/busybox:1.0", &opts).await?;
//! // Overlay lower dirs, top layer first: mount with lowerdir=<joined by ':'>.
//! let (lowerdirs, config) = store.rootfs_layers(&info.name).await?;
//! assert_eq!(config.cmd, vec!["sh"]);
//! # let _ = lowerdirs;
//! // Later: keep what running containers use (their images' manifest digests).
//! let in_use: HashSet<_> = [info.manifest_digest.clone()].into();
//! store.gc(&in_use).await?;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod content;
pub mod image;
pub mod import;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod snapshot;
pub mod store;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod unpack;

pub use cli::{ImagesCommand, run_cli};
pub use content::Digest;
pub use image::ImageConfig;
pub use import::ImportOptions;
pub use progress::{NoProgress, Progress, ProgressState, TerminalProgress};
pub use pull::{Credentials, PullOptions};
pub use reference::ImageRef;
pub use store::{GcReport, ImageError, ImageInfo, ImageStore};

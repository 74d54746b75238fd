"""LaneGuardError: the one root of every error LaneGuard raises on purpose.

`except LaneGuardError` catches any of them; each also keeps the built-in base that says what
kind of failure it is (``ValueError`` for bad input, ``LookupError`` for a missing thing,
``RuntimeError`` for a process that could not finish), so callers that catch those still work.
It lives here, in product_db, because that is the bottom layer every package stands on
(``laneguard.LaneGuardError`` is the same class).

    LaneGuardError
    ├── product_db                           (bad catalog input)
    │   ├── InvalidCodeError                 codes: a GTIN/PLU that fails its format or check digit
    │   ├── InvalidPriceError                money: a price that is not a sane amount
    │   ├── InvalidRowError                  records: a catalog row that cannot be a product
    │   ├── CatalogFileError                 catalog_io: a price file that cannot be read at all
    │   └── ProductNotFoundError             catalog: no product with that code (LookupError)
    ├── laneguard                            (shared ground)
    │   ├── ConfigError                      settings: a settings file or variable that is wrong
    │   ├── BundleError                      bundle: a model bundle that cannot be used
    │   ├── GalleryError                     gallery: unreadable, or another embedder's
    │   ├── SigningKeyError                  signing: a key file that cannot be used
    │   ├── SignatureError                   signing: a signed document its signer did not sign
    │   ├── TlsBindingError                  tls: a certificate the store key did not vouch for
    │   ├── ChainMessageError                chain: a store/HQ message malformed, forged or too big
    │   ├── BrokerAuthError                  nats_auth: a broker key, JWT or account not usable
    │   ├── ImageHeaderError                 image_headers: an image whose header lies or is huge
    │   ├── UnknownTimeZoneError             time_zones: a time zone name the system lacks
    │   └── ServerStartError                 serving: a server that did not start (RuntimeError)
    ├── checkout_node                        (the lane)
    │   ├── CatalogLoadError                 catalog: the lane's catalog copy cannot be loaded
    │   ├── ClipError                        clips: no WebM/VP8 writer here (RuntimeError)
    │   ├── LaneEnrolmentError               enrolment: the store refused the lane's token
    │   ├── OutboxError                      outbox: a message the outbox cannot keep
    │   ├── ReconcileError                   reconciler: a call the transaction's state forbids
    │   ├── UpdateError                      updater: an update step that failed
    │   ├── SupervisorPinError               web.access: a PIN that is not 4-32 printable chars
    │   ├── PlainHttpRefused                 store_link: an http:// store without allow_plain_http
    │   ├── DetectorBackendError             vision.detectors: a backend unknown or absent here
    │   ├── PickListError                    pick_lists: a tap for no open list or PLU (Lookup)
    │   └── ZonesError                       vision.counting: zones without both polygons
    ├── store_server                         (the store)
    │   ├── AuthError                        auth: not signed in or not allowed (status, message)
    │   ├── UserAccountError                 auth: a console user that cannot be created
    │   ├── EnrolmentError                   lanes: a token unknown, used or expired
    │   ├── WrongLaneError                   api.ingest: a message for another lane
    │   ├── EvidenceImageError               media: evidence bytes that are not a usable JPEG
    │   ├── RolloutError                     rollouts: a rollout request that cannot be carried out
    │   ├── EventSettingsError               events: MQTT settings that cannot work
    │   ├── UnknownGalleryEntryError         learning: no gallery entry of that id to withdraw
    │   ├── HqEnrolmentError                 chain_link: HQ refused the store's enrolment
    │   ├── UnknownProductError              chain_apply: a price override for no product (Lookup)
    │   └── ReleaseNotArrivedError           chain_apply: a rollout before its release (Runtime)
    ├── hq_server                            (the chain's HQ)
    │   ├── StoreEnrolmentError              stores: a store token unknown, used or expired
    │   ├── GalleryReleaseError              gallery_release: no held entry by that id
    │   └── ChainRolloutError                releases: a release or rollout that cannot be made
    ├── simulator
    │   ├── ProduceDataError                 produce: a produce photo folder that is not usable
    │   ├── WorldError                       world: a catalog the simulator cannot build from
    │   ├── ScenarioError                    scenario: a scenario that cannot be built
    │   └── RecordingError                   recording: no mp4 video writer here (RuntimeError)
    ├── trainer
    │   ├── ImageFileError                   embedder: a training or reference image unreadable
    │   └── TrainingError                    finetune: a training pass that cannot run
    └── harness
        ├── ScenesError                      evals.scenes: photos, counts or boxes not usable
        ├── ProbeError                       evals.probe: folders a linear probe cannot use
        └── PicklistError                    evals.picklist: a sales prior file not usable
"""

from __future__ import annotations


class LaneGuardError(Exception):
    """Base of every error LaneGuard raises on purpose; the message says what to fix."""

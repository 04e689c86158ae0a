/** NBD protocol constants (fixed newstyle, structured replies), as numbered by the NBD protocol specification (proto.md of the NBD project); wire layouts and meanings in docs/nbd-protocol.md. */
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;
export const FLAG_C_FIXED_NEWSTYLE = 1;
export const FLAG_C_NO_ZEROES = 2;

export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_PEEK_EXPORT = 4;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;
export const OPT_EXTENDED_HEADERS = 11;

export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
export const REP_ERR_UNSUP = 0x80000001;
export const REP_ERR_POLICY = 0x80000002;
export const REP_ERR_INVALID = 0x80000003;
export const REP_ERR_PLATFORM = 0x80000004;
export const REP_ERR_TLS_REQD = 0x80000005;
export const REP_ERR_UNKNOWN = 0x80000006;
export const REP_ERR_SHUTDOWN = 0x80000007;
export const REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const REP_ERR_TOO_BIG = 0x80000009;

export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

export const TX_HAS_FLAGS = 0x1;
export const TX_READ_ONLY = 0x2;
export const TX_SEND_FLUSH = 0x4;
export const TX_SEND_FUA = 0x8;
export const TX_ROTATIONAL = 0x10;
export const TX_SEND_TRIM = 0x20;
export const TX_SEND_WRITE_ZEROES = 0x40;
export const TX_SEND_DF = 0x80;
export const TX_CAN_MULTI_CONN = 0x100;
export const TX_SEND_CACHE = 0x400;
export const TX_SEND_FAST_ZERO = 0x800;

export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

export const CMD_FLAG_FUA = 0x1;
export const CMD_FLAG_NO_HOLE = 0x2;
export const CMD_FLAG_DF = 0x4;
export const CMD_FLAG_REQ_ONE = 0x8;
export const CMD_FLAG_FAST_ZERO = 0x10;

export const REPLY_FLAG_DONE = 0x1;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 0x8001;
export const REPLY_TYPE_ERROR_OFFSET = 0x8002;

export const EPERM = 1;
export const EIO = 5;
export const ENOMEM = 12;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOVERFLOW = 75;
export const ENOTSUP = 95;
export const ESHUTDOWN = 108;

export const STATE_HOLE = 1;
export const STATE_ZERO = 2;

export const BASE_ALLOCATION = 'base:allocation';
/** Context id given to base:allocation by SET_META_CONTEXT. */
export const BASE_ALLOCATION_ID = 1;

/** Advertised block sizes: minimum 1 (unaligned I/O is done server-side), preferred 4 KiB, maximum 32 MiB. */
export const MIN_BLOCK = 1;
export const PREFERRED_BLOCK = 4096;
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** WRITE payloads above MAX_PAYLOAD up to this are read and discarded (EINVAL); larger ones disconnect. */
export const MAX_DISCARDED_PAYLOAD = 64 * 1024 * 1024;
/** Option data larger than this closes the connection (every legal option fits in a few KiB). */
export const MAX_OPTION_DATA = 64 * 1024;
/** Longest string (export name, context query) accepted. */
export const MAX_STRING = 4096;

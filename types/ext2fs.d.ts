// The ext2fs package ships no types; thinpool uses it untyped, through small local interfaces.
declare module 'ext2fs';

// `node --import ./test/support/ts-register.mjs` installs the TypeScript hooks of ts-loader.mjs.
import { register } from 'node:module';

register('./ts-loader.mjs', import.meta.url);

// SPDX-License-Identifier: LGPL-2.1-or-later
/* libxmem: everything. */
#pragma once

#include <xmem/channel.hpp>
#include <xmem/error.hpp>
#include <xmem/mapping.hpp>
#include <xmem/memory.hpp>
#include <xmem/unique_fd.hpp>
#include <xmem/wire.hpp>

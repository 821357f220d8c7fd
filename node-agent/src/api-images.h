/* The image routes (docs/agent-api.md#images, docs/images.md):
 *   POST   /v1/images/pull        {"image": REF}: pull (again) and answer the image
 *   GET    /v1/images             {"images": [...]}
 *   DELETE /v1/images?image=REF   remove it and the layers no other image has */
#pragma once

#include "agent.h"
#include "sandpit/http-server.h"

/* true when path is below /v1/images (then it has answered). */
bool api_images_handle(Agent *a, HttpRequest *req);

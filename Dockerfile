# Vigil image for deployments (docker-compose.yml). One image, every role: the command picks it.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY replays ./replays
COPY rules ./rules
COPY tsconfig.json ./
ENV HOST=0.0.0.0 PORT=8080 VIGIL_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["node", "--max-semi-space-size=64", "bin/vigil.js"]
CMD ["run"]
